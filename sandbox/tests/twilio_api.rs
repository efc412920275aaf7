//! Twilio emulator over HTTP: auth-token rotation, keys (2010 and IAM), regions, subaccounts,
//! pagination, switches, and the `sandbox twilio` CLI.

mod twilio_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use regex::Regex;
use sandbox::twilio::{KeyKind, Switches, TwilioSandbox};
use serde_json::Value;
use twilio_support::call;

fn acct_path(sid: &str) -> String {
    format!("/2010-04-01/Accounts/{sid}.json")
}

fn keys_path(sid: &str) -> String {
    format!("/2010-04-01/Accounts/{sid}/Keys.json")
}

fn iso8601() -> Regex {
    Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").unwrap()
}

fn rfc2822() -> Regex {
    Regex::new(
        r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000$",
    )
    .unwrap()
}

const PROMOTE_404: &str = r#"{"code":20404,"message":"The requested resource /AuthTokens/Promote was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#;

#[tokio::test]
async fn auth_token_rotation_lifecycle() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, primary) = tw.create_account();

    let r = call(&base, "GET", &acct_path(&ac), Some((&ac, &primary)), &[])
        .await
        .expect(200);
    assert_eq!(r.body["auth_token"], primary.as_str());
    assert_eq!(r.body["sid"], ac.as_str());
    assert!(rfc2822().is_match(r.body["date_created"].as_str().unwrap()));
    assert_eq!(r.body["uri"], acct_path(&ac).as_str());
    assert!(r.headers.contains_key("twilio-concurrent-requests"));
    assert!(r.headers.contains_key("twilio-request-duration"));

    // Create the secondary: 201, shown once.
    let r = call(
        &base,
        "POST",
        "/v1/AuthTokens/Secondary",
        Some((&ac, &primary)),
        &[],
    )
    .await
    .expect(201);
    let secondary = r.body["secondary_auth_token"].as_str().unwrap().to_string();
    assert!(Regex::new("^[0-9a-f]{32}$").unwrap().is_match(&secondary));
    assert_eq!(r.body["account_sid"], ac.as_str());
    assert!(iso8601().is_match(r.body["date_created"].as_str().unwrap()));
    assert!(iso8601().is_match(r.body["date_updated"].as_str().unwrap()));
    assert_eq!(
        r.body["url"],
        format!("{base}/v1/AuthTokens/Secondary").as_str()
    );
    assert_eq!(tw.secondary_token(&ac).as_deref(), Some(secondary.as_str()));

    // Both authenticate before promotion.
    for tok in [&primary, &secondary] {
        call(&base, "GET", &acct_path(&ac), Some((&ac, tok)), &[])
            .await
            .expect(200);
    }
    // Only one secondary.
    call(
        &base,
        "POST",
        "/v1/AuthTokens/Secondary",
        Some((&ac, &secondary)),
        &[],
    )
    .await
    .expect_error(400, 70002);

    // Promote with the secondary itself: 200 (not 201), old primary dead at once.
    let r = call(
        &base,
        "POST",
        "/v1/AuthTokens/Promote",
        Some((&ac, &secondary)),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["auth_token"], secondary.as_str());
    assert_eq!(
        r.body["url"],
        format!("{base}/v1/AuthTokens/Promote").as_str()
    );
    call(&base, "GET", &acct_path(&ac), Some((&ac, &primary)), &[])
        .await
        .expect_error(401, 20003);
    let r = call(&base, "GET", &acct_path(&ac), Some((&ac, &secondary)), &[])
        .await
        .expect(200);
    assert_eq!(r.body["auth_token"], secondary.as_str());
    assert_eq!(tw.primary_token(&ac).as_deref(), Some(secondary.as_str()));
    assert_eq!(tw.secondary_token(&ac), None);

    // Promote without a secondary: Twilio's exact 404 body.
    let r = call(
        &base,
        "POST",
        "/v1/AuthTokens/Promote",
        Some((&ac, &secondary)),
        &[],
    )
    .await
    .expect(404);
    assert_eq!(r.body.to_string(), PROMOTE_404);

    // Delete with none → 404/20404; create then delete → 204 and the deleted token is refused.
    call(
        &base,
        "DELETE",
        "/v1/AuthTokens/Secondary",
        Some((&ac, &secondary)),
        &[],
    )
    .await
    .expect_error(404, 20404);
    let r = call(
        &base,
        "POST",
        "/v1/AuthTokens/Secondary",
        Some((&ac, &secondary)),
        &[("SuppressEmailNotification", "true")],
    )
    .await
    .expect(201);
    let third = r.body["secondary_auth_token"].as_str().unwrap().to_string();
    let r = call(
        &base,
        "DELETE",
        "/v1/AuthTokens/Secondary?SuppressEmailNotification=true",
        Some((&ac, &secondary)),
        &[],
    )
    .await
    .expect(204);
    assert_eq!(r.body, Value::Null);
    call(&base, "GET", &acct_path(&ac), Some((&ac, &third)), &[])
        .await
        .expect_error(401, 20003);

    // The log records the e-mail Twilio would have sent, and never a token value.
    let log = tw.request_log();
    let emails: Vec<Option<bool>> = log
        .iter()
        .filter(|r| r.path.contains("/AuthTokens/") && r.status.is_some_and(|s| s < 300))
        .map(|r| r.email_notification)
        .collect();
    assert_eq!(emails, [Some(true), Some(true), Some(false), Some(false)]);
    let dump = serde_json::to_string(&log).unwrap();
    for secret in [&primary, &secondary, &third] {
        assert!(!dump.contains(secret.as_str()), "log leaks a token");
    }
    let roles: Vec<_> = log
        .iter()
        .filter_map(|r| r.credential_role.clone())
        .collect();
    assert!(roles.contains(&"primary".to_string()) && roles.contains(&"secondary".to_string()));
}

#[tokio::test]
async fn switches_change_unconfirmed_behaviour() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    assert_eq!(tw.switches(), Switches::default());
    tw.set_switches(Switches {
        reject_second_secondary: false,
        delete_missing_secondary_is_404: false,
        ..Switches::default()
    });
    let auth = Some((ac.as_str(), tok.as_str()));
    let first = call(&base, "POST", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(201);
    let first = first.body["secondary_auth_token"]
        .as_str()
        .unwrap()
        .to_string();
    let second = call(&base, "POST", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(201);
    let second = second.body["secondary_auth_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    // The replaced secondary is retired.
    call(&base, "GET", &acct_path(&ac), Some((&ac, &first)), &[])
        .await
        .expect_error(401, 20003);
    assert_eq!(tw.stats_for_secret(&first).role, "retired");
    call(&base, "DELETE", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(204);
    call(&base, "DELETE", "/v1/AuthTokens/Secondary", auth, &[])
        .await
        .expect(204);
}

#[tokio::test]
async fn auth_tokens_act_on_the_authenticated_account_and_refuse_keys() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (parent, ptok) = tw.create_account();
    let (sub, stok) = tw.add_subaccount(&parent);

    call(
        &base,
        "POST",
        "/v1/AuthTokens/Secondary",
        Some((&sub, &stok)),
        &[],
    )
    .await
    .expect(201);
    assert!(tw.secondary_token(&sub).is_some());
    assert!(tw.secondary_token(&parent).is_none());

    let (main_sid, main_secret) = tw.create_key(&parent, KeyKind::Main, "main");
    let (std_sid, std_secret) = tw.create_key(&parent, KeyKind::Standard, "std");
    for (u, p) in [(&main_sid, &main_secret), (&std_sid, &std_secret)] {
        call(&base, "POST", "/v1/AuthTokens/Secondary", Some((u, p)), &[])
            .await
            .expect_error(401, 20003);
    }
    tw.set_switches(Switches {
        main_key_manages_auth_tokens: true,
        ..Switches::default()
    });
    let r = call(
        &base,
        "POST",
        "/v1/AuthTokens/Secondary",
        Some((&main_sid, &main_secret)),
        &[],
    )
    .await
    .expect(201);
    assert_eq!(r.body["account_sid"], parent.as_str());
    call(
        &base,
        "POST",
        "/v1/AuthTokens/Promote",
        Some((&std_sid, &std_secret)),
        &[],
    )
    .await
    .expect_error(401, 20003);
    // Parent credentials still work for the parent's own fetch.
    call(
        &base,
        "GET",
        &acct_path(&parent),
        Some((&parent, &ptok)),
        &[],
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn parent_credentials_reach_subaccounts_not_the_reverse() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (parent, ptok) = tw.create_account();
    let (sub, stok) = tw.add_subaccount(&parent);
    let (other, otok) = tw.create_account();

    let r = call(&base, "GET", &acct_path(&sub), Some((&parent, &ptok)), &[])
        .await
        .expect(200);
    assert_eq!(r.body["auth_token"], stok.as_str());
    assert_eq!(r.body["owner_account_sid"], parent.as_str());
    let r = call(
        &base,
        "GET",
        &acct_path(&parent),
        Some((&parent, &ptok)),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["owner_account_sid"], parent.as_str());
    call(&base, "GET", &acct_path(&parent), Some((&sub, &stok)), &[])
        .await
        .expect_error(404, 20404);
    call(
        &base,
        "GET",
        &acct_path(&other),
        Some((&parent, &ptok)),
        &[],
    )
    .await
    .expect_error(404, 20404);
    // Parent manages the subaccount's keys through the 2010 API.
    let r = call(
        &base,
        "POST",
        &keys_path(&sub),
        Some((&parent, &ptok)),
        &[("FriendlyName", "for-sub")],
    )
    .await
    .expect(201);
    assert_eq!(tw.keys(&sub).len(), 1);
    assert_eq!(tw.keys(&sub)[0].sid, r.body["sid"].as_str().unwrap());
    call(
        &base,
        "GET",
        &keys_path(&parent),
        Some((&other, &otok)),
        &[],
    )
    .await
    .expect_error(404, 20404);
}

#[tokio::test]
async fn regions_and_host_segments() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let ie_sid = "AC0123456789abcdef0123456789abcdef";
    let ie_tok = "0123456789abcdef0123456789abcdef";
    tw.add_account(ie_sid, ie_tok, "ie1");
    let (us_sid, us_tok) = tw.create_account();
    let ie = Some((ie_sid, ie_tok));
    let us = Some((us_sid.as_str(), us_tok.as_str()));

    let ok = format!("/api.dublin.ie1.twilio.com{}", acct_path(ie_sid));
    call(&base, "GET", &ok, ie, &[]).await.expect(200);
    for wrong in [
        acct_path(ie_sid),
        format!("/api.twilio.com{}", acct_path(ie_sid)),
        format!("/api.sydney.au1.twilio.com{}", acct_path(ie_sid)),
    ] {
        call(&base, "GET", &wrong, ie, &[])
            .await
            .expect_error(401, 20003);
    }
    // us1 accounts: plain host, us1 region-only host (still served), not ie1.
    for path in [
        acct_path(&us_sid),
        format!("/api.twilio.com{}", acct_path(&us_sid)),
        format!("/api.us1.twilio.com{}", acct_path(&us_sid)),
        format!("/api.ashburn.us1.twilio.com{}", acct_path(&us_sid)),
    ] {
        call(&base, "GET", &path, us, &[]).await.expect(200);
    }
    call(
        &base,
        "GET",
        &format!("/api.dublin.ie1.twilio.com{}", acct_path(&us_sid)),
        us,
        &[],
    )
    .await
    .expect_error(401, 20003);
    // Region-only hosts other than us1 stopped working on 2026-04-28.
    call(
        &base,
        "GET",
        &format!("/api.ie1.twilio.com{}", acct_path(ie_sid)),
        ie,
        &[],
    )
    .await
    .expect_error(421, 20421);
    // A host of another product does not serve the path.
    call(
        &base,
        "GET",
        &format!("/iam.twilio.com{}", acct_path(&us_sid)),
        us,
        &[],
    )
    .await
    .expect_error(404, 20404);
    // AuthTokens on the ie1 accounts host; the URL leads back to that host segment.
    let r = call(
        &base,
        "POST",
        "/accounts.dublin.ie1.twilio.com/v1/AuthTokens/Secondary",
        ie,
        &[],
    )
    .await
    .expect(201);
    assert_eq!(
        r.body["url"],
        format!("{base}/accounts.dublin.ie1.twilio.com/v1/AuthTokens/Secondary").as_str()
    );
    // A Twilio Host header selects the region as well.
    let resp = twilio_support::http()
        .get(format!("{base}/v1/Keys?AccountSid={ie_sid}"))
        .header("Host", "iam.dublin.ie1.twilio.com")
        .basic_auth(ie_sid, Some(ie_tok))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["meta"]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://iam.dublin.ie1.twilio.com/v1/Keys?"));
    let log = tw.request_log();
    assert!(log.iter().any(|r| r.region == "ie1"
        && r.host.as_deref() == Some("api.dublin.ie1.twilio.com")
        && r.status == Some(200)));
}

#[tokio::test]
async fn keys_2010_crud_and_kinds() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let auth = Some((ac.as_str(), tok.as_str()));

    let r = call(
        &base,
        "POST",
        &format!("/api.twilio.com{}", keys_path(&ac)),
        auth,
        &[("FriendlyName", "rotator")],
    )
    .await
    .expect(201);
    let sk = r.body["sid"].as_str().unwrap().to_string();
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert!(Regex::new("^SK[0-9a-f]{32}$").unwrap().is_match(&sk));
    assert!(Regex::new("^[A-Za-z0-9]{32}$").unwrap().is_match(&secret));
    assert!(rfc2822().is_match(r.body["date_created"].as_str().unwrap()));
    assert_eq!(r.body["friendly_name"], "rotator");

    let key_path = format!("/2010-04-01/Accounts/{ac}/Keys/{sk}.json");
    let r = call(&base, "GET", &key_path, auth, &[]).await.expect(200);
    assert_eq!(r.body["sid"], sk.as_str());
    assert!(r.body.get("secret").is_none(), "secret only on create");
    let r = call(
        &base,
        "POST",
        &key_path,
        auth,
        &[("FriendlyName", "renamed")],
    )
    .await
    .expect(200);
    assert_eq!(r.body["friendly_name"], "renamed");
    call(
        &base,
        "POST",
        &keys_path(&ac),
        auth,
        &[("FriendlyName", &"x".repeat(65))],
    )
    .await
    .expect_error(400, 20001);

    // A new standard key authenticates (Balance) but cannot manage keys or read the account.
    let skauth = Some((sk.as_str(), secret.as_str()));
    let r = call(
        &base,
        "GET",
        &format!("/2010-04-01/Accounts/{ac}/Balance.json"),
        skauth,
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["account_sid"], ac.as_str());
    call(&base, "GET", &keys_path(&ac), skauth, &[])
        .await
        .expect_error(401, 20003);
    call(&base, "POST", &keys_path(&ac), skauth, &[])
        .await
        .expect_error(401, 20003);
    call(
        &base,
        "GET",
        &format!("/v1/Keys?AccountSid={ac}"),
        skauth,
        &[],
    )
    .await
    .expect_error(401, 20003);
    call(
        &base,
        "POST",
        "/v1/Keys",
        skauth,
        &[("AccountSid", &ac), ("FriendlyName", "x")],
    )
    .await
    .expect_error(401, 20003);
    call(&base, "GET", &acct_path(&ac), skauth, &[])
        .await
        .expect_error(401, 20003);
    assert_eq!(tw.stats_for_secret(&secret).authenticated, 6);

    // A Main key manages keys like the auth token.
    let (main, main_secret) = tw.create_key(&ac, KeyKind::Main, "main");
    let mauth = Some((main.as_str(), main_secret.as_str()));
    call(&base, "GET", &acct_path(&ac), mauth, &[])
        .await
        .expect(200);
    let r = call(&base, "GET", &keys_path(&ac), mauth, &[])
        .await
        .expect(200);
    let listed: Vec<&str> = r.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["sid"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sk.as_str(), main.as_str()]);

    // Delete: 204, gone from lists, secret refused, fetch 404.
    let r = call(&base, "DELETE", &key_path, mauth, &[])
        .await
        .expect(204);
    assert_eq!(r.body, Value::Null);
    call(&base, "GET", &key_path, auth, &[])
        .await
        .expect_error(404, 20404);
    call(
        &base,
        "GET",
        &format!("/2010-04-01/Accounts/{ac}/Balance.json"),
        skauth,
        &[],
    )
    .await
    .expect_error(401, 20003);
    assert_eq!(tw.stats_for_secret(&secret).role, "deleted");
    assert_eq!(tw.keys(&ac).len(), 1);
    assert_eq!(tw.keys(&ac)[0].kind, KeyKind::Main);
}

#[tokio::test]
async fn iam_keys_crud_with_policy() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let auth = Some((ac.as_str(), tok.as_str()));
    let policy = r#"{"allow":["/twilio/messaging/messages/read"]}"#;

    let r = call(
        &base,
        "POST",
        "/iam.twilio.com/v1/Keys",
        auth,
        &[
            ("AccountSid", &ac),
            ("FriendlyName", "restricted"),
            ("KeyType", "restricted"),
            ("Policy", policy),
        ],
    )
    .await
    .expect(201);
    let rk = r.body["sid"].as_str().unwrap().to_string();
    assert_eq!(
        r.body["policy"]["allow"][0],
        "/twilio/messaging/messages/read"
    );
    assert_eq!(r.body["secret"].as_str().unwrap().len(), 32);
    assert!(rfc2822().is_match(r.body["date_created"].as_str().unwrap()));
    assert_eq!(tw.keys(&ac)[0].kind, KeyKind::Restricted);

    let r = call(
        &base,
        "POST",
        "/v1/Keys",
        auth,
        &[("AccountSid", &ac), ("FriendlyName", "standard")],
    )
    .await
    .expect(201);
    assert_eq!(r.body["policy"], Value::Null);
    let sk = r.body["sid"].as_str().unwrap().to_string();

    // Parameter errors.
    call(&base, "POST", "/v1/Keys", auth, &[("FriendlyName", "x")])
        .await
        .expect_error(400, 20001);
    call(
        &base,
        "POST",
        "/v1/Keys",
        auth,
        &[("AccountSid", &ac), ("KeyType", "restricted")],
    )
    .await
    .expect_error(400, 20001);
    call(
        &base,
        "POST",
        "/v1/Keys",
        auth,
        &[
            ("AccountSid", &ac),
            ("KeyType", "restricted"),
            ("Policy", "not json"),
        ],
    )
    .await
    .expect_error(400, 20001);
    call(&base, "GET", "/v1/Keys", auth, &[])
        .await
        .expect_error(400, 20001);
    let (other, otok) = tw.create_account();
    call(
        &base,
        "GET",
        &format!("/v1/Keys?AccountSid={ac}"),
        Some((&other, &otok)),
        &[],
    )
    .await
    .expect_error(401, 20003);
    call(
        &base,
        "GET",
        &format!("/v1/Keys/{rk}"),
        Some((&other, &otok)),
        &[],
    )
    .await
    .expect_error(404, 20404);

    // Fetch, update policy, list with flags, delete.
    let r = call(&base, "GET", &format!("/v1/Keys/{rk}"), auth, &[])
        .await
        .expect(200);
    assert_eq!(
        r.body["policy"]["allow"][0],
        "/twilio/messaging/messages/read"
    );
    assert!(r.body.get("secret").is_none());
    let r = call(
        &base,
        "POST",
        &format!("/v1/Keys/{rk}"),
        auth,
        &[(
            "Policy",
            r#"{"allow":["/twilio/messaging/messages/update"]}"#,
        )],
    )
    .await
    .expect(200);
    assert_eq!(
        r.body["policy"]["allow"][0],
        "/twilio/messaging/messages/update"
    );
    call(
        &base,
        "POST",
        &format!("/v1/Keys/{sk}"),
        auth,
        &[("Policy", policy)],
    )
    .await
    .expect_error(400, 20001);
    let r = call(
        &base,
        "GET",
        &format!("/v1/Keys?AccountSid={ac}"),
        auth,
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        r.body["keys"][0]["flags"],
        serde_json::json!(["rest_api", "signing"])
    );
    assert_eq!(r.body["meta"]["key"], "keys");
    call(&base, "DELETE", &format!("/v1/Keys/{rk}"), auth, &[])
        .await
        .expect(204);
    call(&base, "GET", &format!("/v1/Keys/{rk}"), auth, &[])
        .await
        .expect_error(404, 20404);
    assert_eq!(tw.keys(&ac).len(), 1);
}

/// Walks a 2010 list by `next_page_uri` and returns every sid.
async fn walk_2010(base: &str, ac: &str, tok: &str, page_size: usize) -> (Vec<String>, usize) {
    let mut sids = Vec::new();
    let mut pages = 0;
    let mut next = Some(format!("{}?PageSize={page_size}", keys_path(ac)));
    while let Some(uri) = next {
        let r = call(base, "GET", &uri, Some((ac, tok)), &[])
            .await
            .expect(200);
        let b = &r.body;
        assert_eq!(b["page"].as_u64(), Some(pages as u64));
        assert_eq!(b["page_size"].as_u64(), Some(page_size as u64));
        assert_eq!(b["start"].as_u64(), Some(sids.len() as u64));
        let n = b["keys"].as_array().unwrap().len();
        assert_eq!(
            b["end"].as_u64(),
            Some((sids.len() + n).saturating_sub(1) as u64)
        );
        assert_eq!(
            b["first_page_uri"],
            format!("{}?PageSize={page_size}&Page=0", keys_path(ac)).as_str()
        );
        assert!(b["uri"].as_str().unwrap().starts_with(&keys_path(ac)));
        assert_eq!(b["previous_page_uri"].is_null(), pages == 0);
        sids.extend(
            b["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["sid"].as_str().unwrap().to_string()),
        );
        next = b["next_page_uri"].as_str().map(|s| {
            assert!(s.starts_with("/2010-04-01/"), "relative next_page_uri");
            s.to_string()
        });
        pages += 1;
    }
    (sids, pages)
}

#[tokio::test]
async fn pagination_over_120_keys_in_both_apis() {
    let tw = TwilioSandbox::start().await.unwrap();
    let base = tw.base_url();
    let (ac, tok) = tw.create_account();
    let expected: Vec<String> = (0..120)
        .map(|i| tw.create_key(&ac, KeyKind::Standard, &format!("k{i}")).0)
        .collect();

    let (sids, pages) = walk_2010(&base, &ac, &tok, 50).await;
    assert_eq!((sids.len(), pages), (120, 3));
    assert_eq!(sids, expected);
    // Default page size 50; bounds 1..=1000.
    let r = call(&base, "GET", &keys_path(&ac), Some((&ac, &tok)), &[])
        .await
        .expect(200);
    assert_eq!(r.body["keys"].as_array().unwrap().len(), 50);
    assert_eq!(r.body["page_size"], 50);
    for bad in ["0", "1001", "x"] {
        call(
            &base,
            "GET",
            &format!("{}?PageSize={bad}", keys_path(&ac)),
            Some((&ac, &tok)),
            &[],
        )
        .await
        .expect_error(400, 20001);
    }
    let r = call(
        &base,
        "GET",
        &format!("{}?PageSize=1000", keys_path(&ac)),
        Some((&ac, &tok)),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["keys"].as_array().unwrap().len(), 120);
    assert!(r.body["next_page_uri"].is_null());
    // Page index without a token.
    let r = call(
        &base,
        "GET",
        &format!("{}?PageSize=50&Page=2", keys_path(&ac)),
        Some((&ac, &tok)),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["keys"].as_array().unwrap().len(), 20);
    assert_eq!(r.body["start"], 100);

    // IAM: absolute meta URLs on the request's host (with host segment), followed verbatim.
    let mut url = Some(format!(
        "{base}/iam.twilio.com/v1/Keys?AccountSid={ac}&PageSize=40"
    ));
    let mut iam_sids = Vec::new();
    let mut page = 0;
    while let Some(u) = url {
        let r = twilio_support::http()
            .get(&u)
            .basic_auth(&ac, Some(&tok))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let b: Value = r.json().await.unwrap();
        let meta = &b["meta"];
        assert_eq!(meta["page"], page);
        assert_eq!(meta["page_size"], 40);
        assert_eq!(
            meta["first_page_url"],
            format!("{base}/iam.twilio.com/v1/Keys?AccountSid={ac}&PageSize=40&Page=0").as_str()
        );
        assert!(meta["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/iam.twilio.com/v1/Keys?")));
        assert_eq!(meta["previous_page_url"].is_null(), page == 0);
        iam_sids.extend(
            b["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["sid"].as_str().unwrap().to_string()),
        );
        url = meta["next_page_url"].as_str().map(str::to_string);
        page += 1;
    }
    assert_eq!(page, 3);
    assert_eq!(iam_sids, expected);
}

#[test]
fn cli_serves_given_accounts() {
    let ac = "AC00000000000000000000000000000001";
    let tok = "00000000000000000000000000000001";
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args([
            "twilio",
            "--listen",
            "127.0.0.1:0",
            "--account",
            &format!("{ac}:{tok}"),
            "--account",
            "AC00000000000000000000000000000002:tok2:ie1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = call(&base, "GET", &acct_path(ac), Some((ac, tok)), &[])
            .await
            .expect(200);
        assert_eq!(r.body["auth_token"], tok);
        call(
            &base,
            "GET",
            &format!(
                "/api.dublin.ie1.twilio.com{}",
                acct_path("AC00000000000000000000000000000002")
            ),
            Some(("AC00000000000000000000000000000002", "tok2")),
            &[],
        )
        .await
        .expect(200);
        let stats: Value = twilio_support::http()
            .get(format!("{base}/_sandbox/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            stats["credentials"][format!("{ac}/auth-token#1")]["authenticated"],
            1
        );
    });
    child.kill().unwrap();
    child.wait().unwrap();
}
