//! `sandbox twilio` command line.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::model::{AccountSeed, TwilioConfig};
use super::TwilioSandbox;

/// Run the Twilio emulator until killed.
#[derive(Debug, Clone, Args)]
pub struct TwilioArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Account to create: `SID:AUTH_TOKEN` or `SID:AUTH_TOKEN:REGION` (default region us1).
    /// Repeatable.
    #[arg(long = "account", value_name = "SID:AUTH_TOKEN", value_parser = parse_account)]
    pub accounts: Vec<AccountSeed>,
    /// Refuse new secondary/promoted tokens and new keys for this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub propagation_delay_ms: u64,
}

pub fn parse_account(s: &str) -> Result<AccountSeed, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(sid), Some(token)) = (parts.next(), parts.next()) else {
        return Err("expected SID:AUTH_TOKEN[:REGION]".into());
    };
    if !super::ids::is_account_sid(sid) {
        return Err(format!("{sid} is not an account sid (AC + 32 hex)"));
    }
    if token.is_empty() {
        return Err("empty auth token".into());
    }
    Ok(AccountSeed {
        sid: sid.to_string(),
        auth_token: token.to_string(),
        region: parts.next().unwrap_or("us1").to_string(),
    })
}

/// Starts the emulator, prints `listening on http://ADDR` and serves until Ctrl-C / SIGTERM.
pub async fn run(args: TwilioArgs) -> anyhow::Result<()> {
    let sandbox = TwilioSandbox::start_with(TwilioConfig {
        listen: args.listen,
        accounts: args.accounts,
        propagation_delay: Duration::from_millis(args.propagation_delay_ms),
        ..TwilioConfig::default()
    })
    .await?;
    println!("listening on {}", sandbox.base_url());
    tokio::signal::ctrl_c().await?;
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_argument() {
        let a = parse_account("AC0123456789abcdef0123456789abcdef:tok:ie1").unwrap();
        assert_eq!((a.auth_token.as_str(), a.region.as_str()), ("tok", "ie1"));
        let a = parse_account("AC0123456789abcdef0123456789abcdef:tok").unwrap();
        assert_eq!(a.region, "us1");
        assert!(parse_account("nope:tok").is_err());
        assert!(parse_account("AC0123456789abcdef0123456789abcdef").is_err());
    }
}
