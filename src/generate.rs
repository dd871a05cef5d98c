//! `interests-receiver generate --profiles N`: fills the database of
//! `DATABASE_URL` (migrated first) with N synthetic completed lookups and
//! their profiles, generated inside PostgreSQL (`store::synthetic`), for
//! demos, load tests and benchmarks. Each generated lookup is marked
//! `synthetic` and carries what search and facets need: identities keyed
//! like the service's own (so `?email=` finds them in any spelling), facet
//! values, their search postings and facet counts.

use anyhow::Context;

use crate::secrets::{MIN_SECRET_LEN, Purpose, ServiceSecret};
use crate::store;
use crate::store::synthetic::{self, IdentityPads};

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// How many completed lookups with profiles to add.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub profiles: u64,
    /// The service's SERVICE_SECRET, so that identity searches find the
    /// generated people [default: the sandbox's development value].
    #[arg(long, env = "SERVICE_SECRET", hide_env_values = true)]
    pub service_secret: Option<String>,
}

pub async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let secret = match args.service_secret.filter(|s| !s.is_empty()) {
        Some(s) if s.len() < MIN_SECRET_LEN => anyhow::bail!(
            "invalid configuration: SERVICE_SECRET: expected at least {MIN_SECRET_LEN} bytes, got {}",
            s.len()
        ),
        Some(s) => ServiceSecret::new(s.into_bytes(), None),
        None => {
            eprintln!(
                "generate: SERVICE_SECRET is unset: identities are keyed with the sandbox's \
                 development value (searches by email, phone or URL work on a sandbox-mode server)"
            );
            ServiceSecret::sandbox()
        }
    };
    let db = store::connect(&args.database_url, 2)
        .await
        .context("cannot connect to DATABASE_URL")?;
    store::migrate(&db).await.context("migrations failed")?;
    let from = synthetic::next_index(&db).await?;
    let to = from + args.profiles as i64 - 1;
    let started = std::time::Instant::now();
    let pads = IdentityPads::of(&secret.key(Purpose::IdentifierHash));
    synthetic::generate(&db, from, to, &pads, &secret.identity_key_id())
        .await
        .context("generating profiles failed")?;
    eprintln!(
        "generate: added {} synthetic completed lookups and profiles (person{from}..person{to}@bench.example), with their search postings and facet counts, in {:.1} s",
        args.profiles,
        started.elapsed().as_secs_f64(),
    );
    if store::lookups::any_of_kind(&db, false).await? {
        eprintln!(
            "generate: note: this database also holds real lookups; a service with upstream \
             credentials refuses to start on it while synthetic rows remain"
        );
    }
    Ok(())
}
