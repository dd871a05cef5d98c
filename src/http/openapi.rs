//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    audit, batch, callbacks, credits, deliveries, events, facets, lookups, ops, profiles, session,
    subjects, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "interests-receiver", description = "Look people up through the Personal Interests API; read stored lookups and profiles."),
    paths(
        audit::list,
        lookups::create, lookups::get, lookups::list,
        batch::create,
        profiles::get, profiles::list,
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
    modifiers(&BearerAuth),
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
