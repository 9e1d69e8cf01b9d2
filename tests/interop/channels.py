"""The channel the interop clients open: plaintext, TLS or mutual TLS, from the same flags."""
import grpc


def open_channel(args):
    """A channel to args.address: plaintext without args.ca; TLS with it; mutual TLS with
    args.cert and args.key too; args.server_name (if the parser has it) overrides the name the
    server's certificate must carry."""
    if args.ca is None:
        return grpc.insecure_channel(args.address)

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key) if args.key else None,
        certificate_chain=read(args.cert) if args.cert else None,
    )
    server_name = getattr(args, "server_name", None)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(args.address, credentials, options=options)
