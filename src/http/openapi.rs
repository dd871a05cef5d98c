//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    audit, batch, callbacks, credits, deliveries, events, export, facets, lookups, ops, profiles,
    refresh, session, subjects, versions, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "interests-receiver", description = "Look people up through the Personal Interests API; read stored lookups and profiles."),
    paths(
        audit::list,
        lookups::create, lookups::get, lookups::list, lookups::resubmit,
        batch::create,
        profiles::get, profiles::list, export::stream, versions::list, versions::changes, refresh::create,
        facets::list,
        subjects::erase,
        events::stream,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::attempts, webhooks::replay,
        deliveries::list,
        callbacks::receive,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi, ops::stats,
        credits::per_day, session::sign_in, session::current, session::sign_out,
    ),
    modifiers(&BearerAuth, &CommonResponses),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Statuses any endpoint can answer, added where an operation does not
/// document them itself, so that the document tells the whole truth: the
/// middleware's 414, 431, 503 (load shed, deadline, database) and 500, the
/// router's 405, and on `/v1/*` the bearer check's 401 and, for writes, the
/// read-only token's 403.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            let operations = [
                (&mut item.get, false),
                (&mut item.head, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (operation, writes) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                // The handlers take 1 to 255 visible ASCII characters (and
                // the HTTP parser refuses control characters in any header).
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name == "Idempotency-Key" {
                        parameter.schema = Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .min_length(Some(1))
                                .max_length(Some(255))
                                .pattern(Some("^[!-~]+$"))
                                .into(),
                        );
                    }
                }
                let mut common = vec![
                    ("405", "this path does not answer that method"),
                    ("414", "request target too long"),
                    ("431", "too many or too large header fields"),
                    ("500", "internal error (logged; never details)"),
                    (
                        "503",
                        "database unavailable, service at capacity, or the request took too long; `Retry-After` when it may be retried",
                    ),
                ];
                if v1 {
                    common.push((
                        "401",
                        "missing or invalid bearer token (or console session)",
                    ));
                    common.push((
                        "422",
                        "invalid query parameters (repeated, NUL, malformed), naming them",
                    ));
                }
                if v1 && writes {
                    common.push((
                        "403",
                        "a read-only token, or a console write without its CSRF token",
                    ));
                }
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description).into());
                }
            }
        }
    }
}
