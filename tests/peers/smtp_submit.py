#!/usr/bin/env python3
"""A submission client built on Python's smtplib, for the tests.

  smtp_submit.py send HOST PORT MODE USER PASSWORD FROM TO[,TO...] MESSAGE_FILE
      MODE: starttls | ssl | plain. USER "-" skips AUTH. Prints one JSON
      line: {"ok": true, "reply": "..."} or {"ok": false, "code": N,
      "reply": "...", "stage": "..."}. Always exits 0 when it could talk.
  smtp_submit.py ses-password SECRET REGION
      The SES SMTP password of a secret access key, derived as AWS documents
      it (independent of Volley's code).
"""
import base64, hashlib, hmac, json, smtplib, ssl, sys


def ses_password(secret, region):
    def sign(key, msg):
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()
    sig = sign(("AWS4" + secret).encode("utf-8"), "11111111")
    for part in (region, "ses", "aws4_request", "SendRawEmail"):
        sig = sign(sig, part)
    return base64.b64encode(bytes([0x04]) + sig).decode("utf-8")


def send(host, port, mode, user, password, sender, rcpts, path):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    stage = "connect"
    try:
        if mode == "ssl":
            s = smtplib.SMTP_SSL(host, int(port), context=ctx, timeout=60)
        else:
            s = smtplib.SMTP(host, int(port), timeout=60)
        stage = "ehlo"
        s.ehlo()
        if mode == "starttls":
            stage = "starttls"
            s.starttls(context=ctx)
            s.ehlo()
        if user != "-":
            stage = "auth"
            s.login(user, password)
        stage = "send"
        with open(path, "rb") as f:
            msg = f.read()
        refused = s.sendmail(sender, rcpts.split(","), msg)
        s.quit()
        print(json.dumps({"ok": True, "refused": {k: list(map(str, v)) for k, v in refused.items()}}))
    except smtplib.SMTPAuthenticationError as e:
        print(json.dumps({"ok": False, "stage": stage, "code": e.smtp_code, "reply": e.smtp_error.decode(errors="replace")}))
    except smtplib.SMTPSenderRefused as e:
        print(json.dumps({"ok": False, "stage": stage, "code": e.smtp_code, "reply": e.smtp_error.decode(errors="replace")}))
    except smtplib.SMTPRecipientsRefused as e:
        first = list(e.recipients.values())[0]
        print(json.dumps({"ok": False, "stage": stage, "code": first[0], "reply": first[1].decode(errors="replace")}))
    except smtplib.SMTPDataError as e:
        print(json.dumps({"ok": False, "stage": stage, "code": e.smtp_code, "reply": e.smtp_error.decode(errors="replace")}))
    except smtplib.SMTPResponseException as e:
        print(json.dumps({"ok": False, "stage": stage, "code": e.smtp_code, "reply": e.smtp_error.decode(errors="replace")}))
    except (smtplib.SMTPException, OSError) as e:
        print(json.dumps({"ok": False, "stage": stage, "code": 0, "reply": repr(e)}))


if __name__ == "__main__":
    if sys.argv[1] == "ses-password":
        print(ses_password(sys.argv[2], sys.argv[3]))
    else:
        send(*sys.argv[2:10])
