#!/usr/bin/env python3
"""The SES v2 API tests' client: boto3's `sesv2` client pointed at Volley.

Usage: ses_client.py ENDPOINT KEY SECRET REGION [KEY2 SECRET2]

KEY2 is a key allowed one recipient a day (its second send must fail).

Runs every operation the API has, with the AWS SDK as an application
would, and prints one JSON object: what each call returned (message ids,
shapes) and, for the refused ones, the SDK's error code and HTTP status.
The test asserts on it; this script asserts nothing itself except that
calls meant to succeed did.
"""
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, key, secret, region = sys.argv[1:5]
cfg = Config(retries={"max_attempts": 1})


def client(k=key, s=secret):
    return boto3.client(
        "sesv2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=k,
        aws_secret_access_key=s,
        config=cfg,
    )


c = client()
out = {}


def err(name, f):
    try:
        f()
        out[name] = {"code": None}
    except ClientError as e:
        out[name] = {
            "code": e.response["Error"]["Code"],
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
            "message": e.response["Error"].get("Message", ""),
        }


simple = {
    "Subject": {"Data": "Reset your password", "Charset": "UTF-8"},
    "Body": {
        "Text": {"Data": "Your code is 123456.\n.a line with a dot\n"},
        "Html": {"Data": "<p>Your code is <b>123456</b> (caf\u00e9)</p>"},
    },
    "Headers": [{"Name": "X-Flow", "Value": "reset"}],
}
r = c.send_email(
    FromEmailAddress="Shop <no-reply@shop.test>",
    Destination={"ToAddresses": ["ada@one.test"], "CcAddresses": ["cc@two.test"], "BccAddresses": ["hidden@two.test"]},
    ReplyToAddresses=["help@shop.test"],
    Content={"Simple": simple},
    EmailTags=[{"Name": "flow", "Value": "reset"}],
    ConfigurationSetName="tx",
)
out["simple"] = r["MessageId"]

raw = (
    "From: shop@shop.test\r\nTo: raw@one.test\r\nSubject: raw one\r\n"
    "X-SES-CONFIGURATION-SET: tx\r\n\r\nraw body\r\n"
).encode()
out["raw"] = c.send_email(Content={"Raw": {"Data": raw}})["MessageId"]

c.create_email_template(
    TemplateName="Welcome",
    TemplateContent={"Subject": "Welcome, {{name}}", "Text": "Hello {{name}}, plan {{plan}}.", "Html": "<p>Hello {{name}}</p>"},
)
err("create_again", lambda: c.create_email_template(TemplateName="Welcome", TemplateContent={"Subject": "x"}))
c.update_email_template(
    TemplateName="Welcome",
    TemplateContent={"Subject": "Welcome aboard, {{name}}", "Text": "Hello {{name}}, plan {{plan}}.", "Html": "<p>Hello {{name}}</p>"},
)
out["get_template"] = c.get_email_template(TemplateName="Welcome")["TemplateContent"]
for i in range(3):
    c.create_email_template(TemplateName=f"extra-{i}", TemplateContent={"Subject": "s", "Text": "t"})
names, token = [], None
while True:
    kw = {"PageSize": 2}
    if token:
        kw["NextToken"] = token
    page = c.list_email_templates(**kw)
    names += [t["TemplateName"] for t in page["TemplatesMetadata"]]
    token = page.get("NextToken")
    if not token:
        break
out["template_names"] = names
c.delete_email_template(TemplateName="extra-2")
err("get_deleted", lambda: c.get_email_template(TemplateName="extra-2"))
out["rendered"] = c.test_render_email_template(TemplateName="Welcome", TemplateData=json.dumps({"name": "Ada", "plan": "pro"}))["RenderedTemplate"]

out["templated"] = c.send_email(
    FromEmailAddress="news@shop.test",
    Destination={"ToAddresses": ["bob@one.test"]},
    Content={"Template": {"TemplateName": "Welcome", "TemplateData": json.dumps({"name": "Bob", "plan": "team"})}},
)["MessageId"]
out["inline"] = c.send_email(
    FromEmailAddress="news@shop.test",
    Destination={"ToAddresses": ["carol@one.test"]},
    Content={"Template": {"TemplateContent": {"Subject": "Inline {{x}}", "Text": "x is {{x}}"}, "TemplateData": "{\"x\": \"42\"}"}},
)["MessageId"]
bulk = c.send_bulk_email(
    FromEmailAddress="news@shop.test",
    DefaultContent={"Template": {"TemplateName": "Welcome", "TemplateData": json.dumps({"name": "friend", "plan": "free"})}},
    BulkEmailEntries=[
        {"Destination": {"ToAddresses": ["b1@one.test"]}, "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": json.dumps({"name": "B1"})}}},
        {"Destination": {"ToAddresses": ["b2@two.test"]}, "ReplacementTags": [{"Name": "tier", "Value": "vip"}]},
        {"Destination": {"ToAddresses": ["not an address"]}},
    ],
    ConfigurationSetName="tx",
)
out["bulk"] = bulk["BulkEmailEntryResults"]

# refusals
msg = {"Simple": {"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "y"}}}}
err("unknown_template", lambda: c.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": ["a@one.test"]}, Content={"Template": {"TemplateName": "Nope", "TemplateData": "{}"}}))
err("missing_variable", lambda: c.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": ["a@one.test"]}, Content={"Template": {"TemplateName": "Welcome", "TemplateData": "{\"name\": \"x\"}"}}))
err("bad_address", lambda: c.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": ["a@@one.test"]}, Content=msg))
err("unverified", lambda: c.send_email(FromEmailAddress="news@elsewhere.test", Destination={"ToAddresses": ["a@one.test"]}, Content=msg))
spoofed = b"From: ceo@elsewhere.test\r\nTo: a@one.test\r\nSubject: x\r\n\r\ny\r\n"
err("raw_spoofed", lambda: c.send_email(FromEmailAddress="shop@shop.test", Content={"Raw": {"Data": spoofed}}))
err("unknown_set", lambda: c.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": ["a@one.test"]}, Content=msg, ConfigurationSetName="nope"))
err("no_recipients", lambda: c.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": []}, Content=msg))
err("too_many", lambda: c.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": [f"r{i}@one.test" for i in range(51)]}, Content=msg))
err("wrong_secret", lambda: client(s="not-the-secret").get_account())
err("unknown_key", lambda: client(k="AKIAUNKNOWN").get_account())

# suppression
c.put_suppressed_destination(EmailAddress="Gone@One.test", Reason="BOUNCE")
c.put_suppressed_destination(EmailAddress="angry@two.test", Reason="COMPLAINT")
out["suppressed"] = c.get_suppressed_destination(EmailAddress="gone@one.test")["SuppressedDestination"]["Reason"]
out["suppressed_bounces"] = [d["EmailAddress"] for d in c.list_suppressed_destinations(Reasons=["BOUNCE"])["SuppressedDestinationSummaries"]]
listed, token = [], None
while True:
    kw = {"PageSize": 1}
    if token:
        kw["NextToken"] = token
    page = c.list_suppressed_destinations(**kw)
    listed += [d["EmailAddress"] for d in page["SuppressedDestinationSummaries"]]
    token = page.get("NextToken")
    if not token:
        break
out["suppressed_all"] = listed
out["to_suppressed"] = c.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": ["angry@two.test"]}, Content=msg)["MessageId"]
c.delete_suppressed_destination(EmailAddress="angry@two.test")
err("get_unsuppressed", lambda: c.get_suppressed_destination(EmailAddress="angry@two.test"))
c.put_suppressed_destination(EmailAddress="optout@one.test", Reason="BOUNCE")
err("optout_get", lambda: c.get_suppressed_destination(EmailAddress="optout@one.test"))
err("optout_delete", lambda: c.delete_suppressed_destination(EmailAddress="optout@one.test"))
err("bad_reason", lambda: c.put_suppressed_destination(EmailAddress="x@one.test", Reason="WHATEVER"))

acct = c.get_account()
out["account"] = {"quota": acct["SendQuota"], "enabled": acct["SendingEnabled"]}
out["sets"] = c.list_configuration_sets()["ConfigurationSets"]
out["set"] = c.get_configuration_set(ConfigurationSetName="tx")["ConfigurationSetName"]
err("unknown_set_get", lambda: c.get_configuration_set(ConfigurationSetName="nope"))
# the classic query API (v1), through boto3's `ses` client
v1 = boto3.client("ses", endpoint_url=endpoint, region_name=region, aws_access_key_id=key, aws_secret_access_key=secret, config=cfg)
out["v1_send"] = v1.send_email(
    Source="news@shop.test",
    Destination={"ToAddresses": ["v1a@one.test"]},
    Message={"Subject": {"Data": "v1 simple"}, "Body": {"Text": {"Data": "v1 body & more"}}},
    Tags=[{"Name": "api", "Value": "v1"}],
    ConfigurationSetName="tx",
)["MessageId"]
out["v1_raw"] = v1.send_raw_email(
    RawMessage={"Data": b"From: shop@shop.test\r\nTo: header-only@one.test\r\nSubject: v1 raw\r\n\r\nraw\r\n"},
    Destinations=["v1raw@two.test"],
)["MessageId"]
out["v1_templated"] = v1.send_templated_email(
    Source="news@shop.test",
    Destination={"ToAddresses": ["v1t@one.test"]},
    Template="Welcome",
    TemplateData=json.dumps({"name": "V1", "plan": "basic"}),
)["MessageId"]
v1bulk = v1.send_bulk_templated_email(
    Source="news@shop.test",
    Template="Welcome",
    DefaultTemplateData=json.dumps({"name": "all", "plan": "free"}),
    Destinations=[
        {"Destination": {"ToAddresses": ["v1b1@one.test"]}, "ReplacementTemplateData": json.dumps({"name": "One"})},
        {"Destination": {"ToAddresses": ["bad"]}},
    ],
)
out["v1_bulk"] = v1bulk["Status"]


def v1err(name, f):
    try:
        f()
        out[name] = {"code": None}
    except ClientError as e:
        out[name] = {"code": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}


v1err("v1_unverified", lambda: v1.send_email(Source="x@elsewhere.test", Destination={"ToAddresses": ["a@one.test"]}, Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}))
v1err("v1_no_template", lambda: v1.send_templated_email(Source="news@shop.test", Destination={"ToAddresses": ["a@one.test"]}, Template="Nope", TemplateData="{}"))
v1err("v1_wrong_secret", lambda: boto3.client("ses", endpoint_url=endpoint, region_name=region, aws_access_key_id=key, aws_secret_access_key="nope", config=cfg).send_raw_email(RawMessage={"Data": b"From: shop@shop.test\r\n\r\nx"}))

if len(sys.argv) > 6:
    small = client(sys.argv[5], sys.argv[6])
    out["small_first"] = small.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": ["q1@one.test"]}, Content=msg)["MessageId"]
    err("small_second", lambda: small.send_email(FromEmailAddress="news@shop.test", Destination={"ToAddresses": ["q2@one.test"]}, Content=msg))
    out["small_account"] = small.get_account()["SendQuota"]
print(json.dumps(out))
