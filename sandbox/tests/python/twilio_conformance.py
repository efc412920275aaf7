"""Drives the Twilio emulator with Twilio's official Python library (twilio 9.x).

Usage: twilio_conformance.py BASE_URL AC_SID AUTH_TOKEN IE1_SID IE1_TOKEN STD_KEY_SID STD_KEY_SECRET

The client's HTTP layer rewrites https://{host}/{path} to {BASE_URL}/{host}/{path}, so the
emulator sees which Twilio host (and so which region) each call was meant for. Exits non-zero
with a message on the first failed check; prints "OK <n> checks" at the end.
"""

import datetime
import json
import sys
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

CHECKS = 0


def check(cond, what):
    global CHECKS
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    CHECKS += 1


def expect_error(fn, status, code, what):
    try:
        fn()
    except TwilioRestException as e:
        check(
            e.status == status and e.code == code,
            f"{what}: expected {status}/{code}, got {e.status}/{e.code} ({e.msg})",
        )
        return e
    check(False, f"{what}: expected TwilioRestException {status}/{code}, call succeeded")


def expect_page_error(fn, status, code, what):
    """List calls raise a plain TwilioException("Unable to fetch page", response)."""
    try:
        fn()
    except TwilioRestException:
        check(False, f"{what}: list errors are expected as TwilioException with the response")
    except TwilioException as e:
        response = e.args[1]
        body = json.loads(response.text)
        check(
            response.status_code == status and body.get("code") == code,
            f"{what}: expected {status}/{code}, got {response.status_code} {response.text}",
        )
        return
    check(False, f"{what}: expected an error, call succeeded")


class EmulatorHttpClient(TwilioHttpClient):
    def __init__(self, base):
        super().__init__()
        self.base = base.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname.endswith("twilio.com"):
            url = f"{self.base}/{parts.netloc}{parts.path}"
            if parts.query:
                url += f"?{parts.query}"
        return super().request(method, url, *args, **kwargs)


def main():
    base, ac, token, ie_sid, ie_token, std_sid, std_secret = sys.argv[1:8]

    def client(user, password, **kw):
        return Client(user, password, account_sid=ac if user.startswith("SK") else None,
                      http_client=EmulatorHttpClient(base), **kw)

    primary = client(ac, token)

    # --- Auth Token rotation (accounts.twilio.com) -------------------------------------------
    acct = primary.api.v2010.accounts(ac).fetch()
    check(acct.sid == ac and acct.auth_token == token, "fetch account returns its auth_token")
    check(isinstance(acct.date_created, datetime.datetime), "account date_created is RFC 2822")

    sec = primary.accounts.v1.secondary_auth_token().create(suppress_email_notification=True)
    secondary = sec.secondary_auth_token
    check(len(secondary) == 32 and secondary != token, "secondary token created")
    check(sec.account_sid == ac, "secondary account_sid")
    check(isinstance(sec.date_created, datetime.datetime), "secondary date_created is ISO 8601")
    check(sec.url.endswith("/v1/AuthTokens/Secondary"), "secondary url")

    with_secondary = client(ac, secondary)
    check(with_secondary.api.v2010.accounts(ac).fetch().sid == ac, "secondary authenticates")
    check(primary.api.v2010.accounts(ac).fetch().sid == ac, "primary still authenticates")
    expect_error(lambda: primary.accounts.v1.secondary_auth_token().create(), 400, 70002,
                 "second secondary")

    promoted = with_secondary.accounts.v1.auth_token_promotion().update()
    check(promoted.auth_token == secondary, "promote returns the new primary")
    check(isinstance(promoted.date_updated, datetime.datetime), "promotion date_updated")
    e = expect_error(lambda: primary.api.v2010.accounts(ac).fetch(), 401, 20003,
                     "old primary after promotion")
    check(e.uri.endswith(f"/Accounts/{ac}.json"), "exception carries the uri")
    check(with_secondary.api.v2010.accounts(ac).fetch().auth_token == secondary,
          "account shows the promoted token")
    e = expect_error(lambda: with_secondary.accounts.v1.auth_token_promotion().update(), 404,
                     20404, "promote without secondary")
    check("/AuthTokens/Promote was not found" in e.msg, f"promote 404 message: {e.msg}")
    expect_error(lambda: with_secondary.accounts.v1.secondary_auth_token().delete(), 404, 20404,
                 "delete missing secondary")
    with_secondary.accounts.v1.secondary_auth_token().create()
    check(with_secondary.accounts.v1.secondary_auth_token().delete(
        suppress_email_notification=True) is True, "delete secondary")

    admin = with_secondary

    # --- Keys through the 2010 API --------------------------------------------------------------
    v2010 = admin.api.v2010.accounts(ac)
    new = v2010.new_keys.create(friendly_name="py-2010")
    check(new.sid.startswith("SK") and len(new.sid) == 34, "2010 key sid")
    check(len(new.secret) == 32 and new.secret.isalnum(), "2010 key secret")
    check(isinstance(new.date_created, datetime.datetime), "2010 key date is RFC 2822")
    fetched = v2010.keys(new.sid).fetch()
    check(fetched.friendly_name == "py-2010", "2010 key fetch")
    check(v2010.keys(new.sid).update(friendly_name="renamed").friendly_name == "renamed",
          "2010 key update")
    check(new.sid in [k.sid for k in v2010.keys.list()], "2010 key listed")
    check(v2010.keys(new.sid).delete() is True, "2010 key delete")
    expect_error(lambda: v2010.keys(new.sid).fetch(), 404, 20404, "deleted 2010 key")

    # --- Keys through IAM v1 (restricted with policy) -------------------------------------------
    policy = {"allow": ["/twilio/messaging/messages/read"]}
    rk = admin.iam.v1.new_api_key.create(account_sid=ac, friendly_name="py-iam",
                                         key_type="restricted", policy=policy)
    check(rk.sid.startswith("SK") and len(rk.secret) == 32, "IAM restricted key created")
    check(rk.policy == policy, f"IAM key policy kept: {rk.policy}")
    got = admin.iam.v1.api_key(rk.sid).fetch()
    check(got.policy == policy and got.friendly_name == "py-iam", "IAM key fetch")
    check(admin.iam.v1.api_key(rk.sid).update(friendly_name="py-iam-2").friendly_name
          == "py-iam-2", "IAM key update")
    sk = admin.iam.v1.new_api_key.create(account_sid=ac, friendly_name="py-std")
    check(sk.policy is None, "IAM standard key has no policy")
    listed = admin.iam.v1.get_api_keys.list(account_sid=ac)
    check({rk.sid, sk.sid} <= {k.sid for k in listed}, "IAM keys listed")
    check(all(k.flags == ["rest_api", "signing"] for k in listed), "IAM list flags")
    check(admin.iam.v1.api_key(rk.sid).delete() is True, "IAM key delete")
    expect_error(lambda: admin.iam.v1.api_key(rk.sid).fetch(), 404, 20404, "deleted IAM key")

    # --- Pagination across pages, both APIs -----------------------------------------------------
    made = [v2010.new_keys.create(friendly_name=f"page-{i}").sid for i in range(23)]
    all_2010 = [k.sid for k in v2010.keys.list(page_size=10)]
    check(all(s in all_2010 for s in made), "2010 list(page_size=10) covers all pages")
    check(len(all_2010) == len(set(all_2010)), "2010 pages do not repeat")
    page = v2010.keys.page(page_size=10)
    pages = 1
    while page.next_page_url:
        page = page.next_page()
        pages += 1
    check(pages == (len(all_2010) + 9) // 10, f"2010 walked {pages} pages")
    all_iam = [k.sid for k in admin.iam.v1.get_api_keys.list(account_sid=ac, page_size=7)]
    check(sorted(all_iam) == sorted(all_2010), "IAM list(page_size=7) matches 2010 list")
    check(len(all_iam) > 7, "IAM list spans several pages")
    check(len(list(v2010.keys.list(page_size=10, limit=15))) == 15, "limit across pages")

    # --- Key kinds ------------------------------------------------------------------------------
    std = client(std_sid, std_secret)
    check(std.api.v2010.accounts(ac).balance.fetch().account_sid == ac,
          "standard key authenticates (balance)")
    expect_page_error(lambda: std.api.v2010.accounts(ac).keys.list(), 401, 20003,
                 "standard key cannot list keys")
    expect_error(lambda: std.iam.v1.new_api_key.create(account_sid=ac), 401, 20003,
                 "standard key cannot create IAM keys")
    expect_error(lambda: std.api.v2010.accounts(ac).fetch(), 401, 20003,
                 "standard key cannot read /Accounts")
    new_std = client(sk.sid, sk.secret)
    check(new_std.api.v2010.accounts(ac).balance.fetch().currency == "USD",
          "IAM-created key authenticates")

    # --- Regions --------------------------------------------------------------------------------
    ie = Client(ie_sid, ie_token, region="ie1", edge="dublin",
                http_client=EmulatorHttpClient(base))
    check(ie.api.v2010.accounts(ie_sid).fetch().sid == ie_sid, "ie1 account on ie1 host")
    us_host = client(ie_sid, ie_token)
    expect_error(lambda: us_host.api.v2010.accounts(ie_sid).fetch(), 401, 20003,
                 "ie1 credentials on us1")
    region_only = Client(ie_sid, ie_token, region="ie1", http_client=EmulatorHttpClient(base))
    expect_error(lambda: region_only.api.v2010.accounts(ie_sid).fetch(), 421, 20421,
                 "region-only host refused")
    ie_sec = ie.accounts.v1.secondary_auth_token().create()
    check(ie_sec.url.startswith(f"{base}/accounts.dublin.ie1.twilio.com/"),
          f"ie1 url: {ie_sec.url}")

    print(f"OK {CHECKS} checks")


if __name__ == "__main__":
    main()
