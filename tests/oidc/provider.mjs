// A real OpenID Provider (panva/oidc-provider) for the tests, over HTTPS on 127.0.0.1 and a free
// port: discovery, its ES256 keys, and JWT access tokens by the client credentials grant
// (audience "api"), each carrying the claims an identity provider adds for groups and email.
// Two clients: ops-job (groups ops, dev) and dev-job (group dev), secrets "<id>-secret"; and
// `gateway` (secret "gateway-secret"), which may only introspect. For the resource
// https://opaque.example it issues opaque access tokens instead, served by its introspection
// (RFC 7662) and revocation (RFC 7009) endpoints.
// DPoP (RFC 9449) and certificate-bound tokens (RFC 8705) are on: a token asked with a DPoP proof
// is bound to its key (cnf.jkt); one asked by `mtls-job` is bound to the certificate the request
// carries, which stands for the TLS client certificate in the x-test-client-cert header (base64
// DER), as a TLS-terminating proxy in front of a provider passes it on.
// Prints "listening on ISSUER" once it serves; then, for each line read on stdin, as the client
// would (over HTTPS with its secret, trusting CA):
//   CLIENT          asks its token endpoint for CLIENT's JWT access token: "token JWT"
//   opaque CLIENT   the same for an opaque one: "token TOKEN"
//   revoke CLIENT TOKEN  revokes CLIENT's token there: "revoked"
//   dpop CLIENT PROOF    a JWT access token bound to the key of PROOF (made for POST ISSUER/token)
//   mtls CLIENT CERT     a JWT access token bound to CERT (base64 DER)
// or "error WHY". Usage: node provider.mjs CERT KEY CA
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request } from 'node:https';
import { createInterface } from 'node:readline';
import Provider from 'oidc-provider';

const [cert, key, ca] = process.argv.slice(2).map((path) => readFileSync(path));
const signing = (type, options, alg) => ({
  ...generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }),
  kid: `test-${alg.toLowerCase()}`,
  alg,
  use: 'sig',
});
const keys = [signing('ec', { namedCurve: 'P-256' }, 'ES256'), signing('rsa', { modulusLength: 2048 }, 'RS256')];
const groups = { 'ops-job': ['ops', 'dev'], 'dev-job': ['dev'] };
const client = (id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
});
const gateway = { ...client('gateway'), grant_types: [] };
const mtls = { ...client('mtls-job'), tls_client_certificate_bound_access_tokens: true };
const pem = (der) => `-----BEGIN CERTIFICATE-----\n${der.match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;

let handle = (_request, response) => response.writeHead(503).end();
const server = createServer({ cert, key }, (request, response) => handle(request, response));
server.listen(0, '127.0.0.1', () => {
  const issuer = `https://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [...Object.keys(groups).map(client), gateway, mtls],
    jwks: { keys },
    ttl: { ClientCredentials: 3600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      dPoP: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        getCertificate: (ctx) => {
          const der = ctx.get('x-test-client-cert');
          return der ? pem(der) : undefined;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://api.example',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => (resource === 'https://opaque.example' ? {
          scope: 'read write',
          audience: 'api',
          accessTokenTTL: 3600,
          accessTokenFormat: 'opaque',
        } : {
          scope: 'read write',
          audience: 'api',
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    extraTokenClaims: async (_ctx, token) => ({
      groups: groups[token.clientId] ?? [],
      email: `${token.clientId}@example.com`,
    }),
  });
  handle = provider.callback();
  console.log(`listening on ${issuer}`);
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [first, second, third] = line.trim().split(' ');
    if (first === 'opaque') mint(issuer, second, '&resource=https%3A%2F%2Fopaque.example');
    else if (first === 'revoke') revoke(issuer, second, third);
    else if (first === 'dpop') mint(issuer, second, '', { dpop: third });
    else if (first === 'mtls') mint(issuer, second, '', { 'x-test-client-cert': third });
    else mint(issuer, first, '');
  });
});

// RFC 7009 revocation of `token`, as the client `id` asks it.
function revoke(issuer, id, token) {
  const body = `token=${encodeURIComponent(token)}&token_type_hint=access_token`;
  const asked = request(`${issuer}/token/revocation`, {
    method: 'POST',
    ca,
    auth: `${id}:${id}-secret`,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': body.length },
  }, (response) => {
    response.resume();
    response.on('end', () => console.log(response.statusCode === 200 ? 'revoked token' : `error ${response.statusCode}`));
  });
  asked.on('error', (e) => console.log(`error ${e}`));
  asked.end(body);
}

// The client credentials grant, as the client `id` asks it (`extra` added to the form, `more`
// headers sent).
function mint(issuer, id, extra, more = {}) {
  const body = `grant_type=client_credentials&scope=read${extra}`;
  const asked = request(`${issuer}/token`, {
    method: 'POST',
    ca,
    auth: `${id}:${id}-secret`,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': body.length, ...more },
  }, (response) => {
    let text = '';
    response.on('data', (chunk) => { text += chunk; });
    response.on('end', () => {
      try {
        const answer = JSON.parse(text);
        console.log(answer.access_token ? `token ${answer.access_token}` : `error ${text}`);
      } catch (e) {
        console.log(`error ${e}`);
      }
    });
  });
  asked.on('error', (e) => console.log(`error ${e}`));
  asked.end(body);
}
