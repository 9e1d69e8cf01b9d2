//! `ResourceV2Proto`: the production version of the resource API, over the same store as v1.
//! Errors are gRPC status codes; List pages (keyset pagination by id, so a page costs the same
//! at the millionth resource as at the first); Create with a request id is safe to retry; Update
//! and Delete with an etag refuse to overwrite a change the caller has not seen.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};

use super::{answer_from_store, check_name};
use crate::apis::call::Call;
use crate::apis::offer::{Api, ApiOffer, DependsOn, ServingContext};
use crate::proto::{
    create_resource_v2_proto, grpc_api, service_names, Empty, ResourceV2, ResourceV2CreateRequest,
    ResourceV2DeleteRequest, ResourceV2GetRequest, ResourceV2ListRequest, ResourceV2ListResponse,
    ResourceV2Proto, ResourceV2UpdateRequest,
};
use crate::store::{Changed, Created, PageQuery, Resource, ResourceStore};

/// The service's name, as health checking and reflection report it.
pub const NAME: &str = service_names::RESOURCE_V2_PROTO;

/// Resources on a page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The most resources on a page; a larger `page_size` gets this many.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The longest request id: a UUID is 36.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// How long a page token stays good. Long enough to page through a million resources slowly;
/// short enough that a token kept by mistake is refused instead of resuming a stale listing.
pub const PAGE_TOKEN_SECONDS: i64 = 3600;

/// How far in the future a page token's issued-at may be: replicas' clocks differ a little.
const PAGE_TOKEN_CLOCK_SKEW: i64 = 60;

/// The resource API, version 2, over a shared store.
#[derive(Clone)]
pub struct ResourceV2Api {
    store: Arc<dyn ResourceStore>,
    max_name_bytes: usize,
}

/// Always served, over the same store as v1; ready while the store is.
pub fn offer(serving: &ServingContext<'_>) -> ApiOffer {
    let api = ResourceV2Api {
        store: Arc::clone(serving.resources),
        max_name_bytes: serving.options.max_name_bytes,
    };
    ApiOffer::Served(Api {
        name: NAME,
        service: create_resource_v2_proto(api),
        file: grpc_api::file_descriptor(),
        depends_on: DependsOn::Store,
    })
}

fn to_message(resource: Resource) -> ResourceV2 {
    let mut message = ResourceV2::new();
    message.id = resource.id;
    message.owner_id = resource.owner_id;
    message.name = resource.name;
    message.etag = etag(resource.version);
    message
}

/// The etag of a resource at `version`: opaque to clients, compared as a whole.
fn etag(version: u64) -> String {
    format!("v{version}")
}

/// The version an etag names; None for an empty etag (no condition).
fn version_of(etag: &str) -> Result<Option<u64>, String> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.strip_prefix('v')
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            "the etag is not one this API gives (send back the etag of a ResourceV2 you read, or \
             none)"
                .to_owned()
        })
}

/// Where the next page starts, and which listing it continues.
#[derive(Debug, PartialEq, Eq)]
struct PageToken {
    from_id: u64,
    owner_id: Option<u64>,
    issued_at: i64,
}

impl PageToken {
    /// `p1.FROM.OWNER.ISSUED` in base64url: the position, not the data, so a resource created
    /// or removed meanwhile never shifts a page.
    fn encode(&self) -> String {
        let owner = self
            .owner_id
            .map_or_else(String::new, |owner| owner.to_string());
        let text = format!("p1.{}.{owner}.{}", self.from_id, self.issued_at);
        URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(token: &str) -> Option<Self> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let mut parts = text.split('.');
        if parts.next()? != "p1" {
            return None;
        }
        let from_id = parts.next()?.parse().ok()?;
        let owner_id = match parts.next()? {
            "" => None,
            owner => Some(owner.parse().ok()?),
        };
        let issued_at = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self {
            from_id,
            owner_id,
            issued_at,
        })
    }
}

/// The query for the page `request` asks for at `now`, or why it cannot be answered.
fn page_query(request: &ResourceV2ListRequest, now: i64) -> Result<PageQuery, String> {
    let limit = match request.page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    };
    let owner_id = request.owner_id;
    if request.page_token.is_empty() {
        return Ok(PageQuery {
            from_id: 0,
            owner_id,
            limit,
        });
    }
    let token = PageToken::decode(&request.page_token).ok_or_else(|| {
        "page_token is not one this API gave: send the next_page_token of the previous page, or \
         none for the first page"
            .to_owned()
    })?;
    if token.owner_id != owner_id {
        return Err(format!(
            "page_token continues a listing {}, but this request asks {}: keep the same owner_id \
             while paging, or start again without a page_token",
            describe_owner(token.owner_id),
            describe_owner(owner_id)
        ));
    }
    // Checked: a forged issued-at (i64::MIN, say) must read as stale, never wrap into fresh.
    let fresh = now
        .checked_sub(token.issued_at)
        .is_some_and(|age| (-PAGE_TOKEN_CLOCK_SKEW..=PAGE_TOKEN_SECONDS).contains(&age));
    if !fresh {
        return Err(format!(
            "page_token is stale (a page token is good for {PAGE_TOKEN_SECONDS} s): list again \
             from the first page"
        ));
    }
    Ok(PageQuery {
        from_id: token.from_id,
        owner_id,
        limit,
    })
}

fn describe_owner(owner_id: Option<u64>) -> String {
    match owner_id {
        Some(owner) => format!("of owner_id {owner}"),
        None => "of every owner".to_owned(),
    }
}

fn not_found(id: u64) -> RpcStatus {
    RpcStatus::with_message(RpcStatusCode::NOT_FOUND, format!("no resource has id {id}"))
}

/// A change refused because the resource moved on since the caller read it.
fn stale(id: u64, sent: &str, current: u64) -> RpcStatus {
    RpcStatus::with_message(
        RpcStatusCode::ABORTED,
        format!(
            "resource {id} has changed since etag {sent} was read (it is at etag {}): get it \
             again and reapply the change",
            etag(current)
        ),
    )
}

impl ResourceV2Proto for ResourceV2Api {
    fn list(
        &mut self,
        ctx: RpcContext,
        req: ResourceV2ListRequest,
        sink: UnarySink<ResourceV2ListResponse>,
    ) {
        let call = Call::start(&ctx);
        let now = crate::time::unix_now();
        let query = match page_query(&req, now) {
            Ok(query) => query,
            Err(why) => return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why),
        };
        // One more than the page, to know whether another page follows without a second query.
        let asked = PageQuery {
            limit: query.limit + 1,
            ..query
        };
        answer_from_store(call, &ctx, sink, self.store.page(asked), move |mut page| {
            let mut response = ResourceV2ListResponse::new();
            if page.len() > query.limit {
                page.truncate(query.limit);
                let last = page.last().map_or(query.from_id, |resource| resource.id);
                // No id follows u64::MAX: then there is no next page to point at.
                if let Some(from_id) = last.checked_add(1) {
                    response.next_page_token = PageToken {
                        from_id,
                        owner_id: query.owner_id,
                        issued_at: now,
                    }
                    .encode();
                }
            }
            response.resources = page.into_iter().map(to_message).collect();
            Ok(response)
        });
    }

    fn get(&mut self, ctx: RpcContext, req: ResourceV2GetRequest, sink: UnarySink<ResourceV2>) {
        let call = Call::start(&ctx);
        let id = req.id;
        answer_from_store(call, &ctx, sink, self.store.get(id), move |found| {
            found.map(to_message).ok_or_else(|| not_found(id))
        });
    }

    fn create(
        &mut self,
        ctx: RpcContext,
        req: ResourceV2CreateRequest,
        sink: UnarySink<ResourceV2>,
    ) {
        let call = Call::start(&ctx);
        if let Err(why) = check_name(&req.name, self.max_name_bytes) {
            return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why);
        }
        if req.request_id.len() > MAX_REQUEST_ID_BYTES {
            let why = format!(
                "request_id is {} bytes long; the limit is {MAX_REQUEST_ID_BYTES} bytes (a UUID \
                 is 36)",
                req.request_id.len()
            );
            return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why);
        }
        let request_id = (!req.request_id.is_empty()).then(|| req.request_id.clone());
        let created = self.store.create_once(request_id, req.owner_id, req.name);
        answer_from_store(call, &ctx, sink, created, move |created| match created {
            Created::Done(resource) => Ok(to_message(resource)),
            Created::Conflict(first) => Err(RpcStatus::with_message(
                RpcStatusCode::ALREADY_EXISTS,
                format!(
                    "request_id {:?} was used by a different create (of resource {}, owner_id \
                     {}): a retry must repeat the request as it was; a new create needs a new \
                     request_id",
                    req.request_id, first.id, first.owner_id
                ),
            )),
        });
    }

    fn update(
        &mut self,
        ctx: RpcContext,
        req: ResourceV2UpdateRequest,
        sink: UnarySink<ResourceV2>,
    ) {
        let call = Call::start(&ctx);
        let checked =
            check_name(&req.name, self.max_name_bytes).and_then(|()| version_of(&req.etag));
        let expected = match checked {
            Ok(expected) => expected,
            Err(why) => return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why),
        };
        let (id, sent) = (req.id, req.etag);
        let updated = self.store.update(id, req.name, expected);
        answer_from_store(call, &ctx, sink, updated, move |changed| match changed {
            Changed::Done(resource) => Ok(to_message(resource)),
            Changed::Missing => Err(not_found(id)),
            Changed::Stale { current } => Err(stale(id, &sent, current)),
        });
    }

    fn delete(&mut self, ctx: RpcContext, req: ResourceV2DeleteRequest, sink: UnarySink<Empty>) {
        let call = Call::start(&ctx);
        let expected = match version_of(&req.etag) {
            Ok(expected) => expected,
            Err(why) => return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why),
        };
        let (id, sent) = (req.id, req.etag);
        answer_from_store(
            call,
            &ctx,
            sink,
            self.store.delete(id, expected),
            move |changed| match changed {
                Changed::Done(()) => Ok(Empty::new()),
                Changed::Missing => Err(not_found(id)),
                Changed::Stale { current } => Err(stale(id, &sent, current)),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(page_token: &str, owner_id: Option<u64>) -> ResourceV2ListRequest {
        let mut request = ResourceV2ListRequest::new();
        request.page_token = page_token.to_owned();
        request.owner_id = owner_id;
        request
    }

    #[test]
    fn a_page_token_carries_its_position_and_filter() {
        let token = PageToken {
            from_id: 1234,
            owner_id: Some(7),
            issued_at: 1_000,
        };
        assert_eq!(PageToken::decode(&token.encode()), Some(token));
        let query = page_query(&listing(&token_text(1234, Some(7), 1_000), Some(7)), 1_100)
            .expect("a good token");
        assert_eq!(
            (query.from_id, query.owner_id, query.limit),
            (1234, Some(7), 100)
        );
    }

    fn token_text(from_id: u64, owner_id: Option<u64>, issued_at: i64) -> String {
        PageToken {
            from_id,
            owner_id,
            issued_at,
        }
        .encode()
    }

    #[test]
    fn a_stale_forged_or_mismatched_page_token_is_refused() {
        let old = listing(&token_text(5, None, 1_000), None);
        let why = page_query(&old, 1_000 + PAGE_TOKEN_SECONDS + 1).expect_err("stale");
        assert!(why.contains("stale"), "{why}");
        let why = page_query(&listing("not-a-token", None), 1_000).expect_err("forged");
        assert!(why.contains("not one this API gave"), "{why}");
        let other_owner = listing(&token_text(5, Some(1), 1_000), Some(2));
        let why = page_query(&other_owner, 1_000).expect_err("another listing");
        assert!(
            why.contains("owner_id 1") && why.contains("owner_id 2"),
            "{why}"
        );
    }

    #[test]
    fn a_page_token_issued_at_either_end_of_time_is_stale_not_an_overflow() {
        for issued_at in [
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            1_000 + PAGE_TOKEN_CLOCK_SKEW + 1,
        ] {
            let forged = listing(&token_text(5, None, issued_at), None);
            let why = page_query(&forged, 1_000).expect_err("stale");
            assert!(why.contains("stale"), "{issued_at}: {why}");
        }
        let edge = listing(&token_text(5, None, 1_000 + PAGE_TOKEN_CLOCK_SKEW), None);
        assert!(
            page_query(&edge, 1_000).is_ok(),
            "a minute ahead is a clock's skew"
        );
    }

    #[test]
    fn page_sizes_default_and_are_capped() {
        let mut request = listing("", None);
        assert_eq!(
            page_query(&request, 0).expect("ok").limit,
            DEFAULT_PAGE_SIZE
        );
        request.page_size = 1_000_000;
        assert_eq!(page_query(&request, 0).expect("ok").limit, MAX_PAGE_SIZE);
    }

    #[test]
    fn etags_name_versions() {
        assert_eq!(version_of(&etag(3)), Ok(Some(3)));
        assert_eq!(version_of(""), Ok(None));
        assert!(version_of("3").is_err() && version_of("vx").is_err());
    }
}
