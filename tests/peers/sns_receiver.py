#!/usr/bin/python3
"""An SNS HTTP/S endpoint for the tests, independent of Volley's code.

Usage: sns_receiver.py PORT OUT

Verifies the SignatureVersion 2 signature (SHA256withRSA over SNS's
canonical string) of every SNS message with the certificate fetched from
its SigningCertURL (Python `cryptography`), confirms subscriptions by
GETting their SubscribeURL, and appends one JSON line per request to OUT:
{"kind": "notification"|"confirmation"|"raw"|"refused"|"failed"|"bad", ...}.
Raw deliveries (x-amz-sns-rawdelivery: true) are recorded with the
x-amz-sns-message-id header as their id.

Behaviour switches, files next to OUT:
  OUT.fail        present: answer every request 500
  OUT.refuse-TYPE present: answer 400 to notifications of that eventType
Prints "ready" once listening.
"""
import base64
import json
import os
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

PORT, OUT = int(sys.argv[1]), sys.argv[2]
LOCK = threading.Lock()
CERTS = {}

NOTIFICATION = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRMATION = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]


def record(line):
    with LOCK:
        with open(OUT, "a") as f:
            f.write(json.dumps(line) + "\n")


def cert(url):
    if url not in CERTS:
        pem = urllib.request.urlopen(url, timeout=10).read()
        CERTS[url] = x509.load_pem_x509_certificate(pem)
    return CERTS[url]


def verify(m):
    if m.get("SignatureVersion") != "2":
        raise ValueError("SignatureVersion %r" % m.get("SignatureVersion"))
    keys = NOTIFICATION if m["Type"] == "Notification" else CONFIRMATION
    text = "".join("%s\n%s\n" % (k, m[k]) for k in keys if k in m).encode()
    cert(m["SigningCertURL"]).public_key().verify(
        base64.b64decode(m["Signature"]), text, padding.PKCS1v15(), hashes.SHA256()
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if os.path.exists(OUT + ".fail"):
            record({"kind": "failed"})
            return self.answer(500)
        try:
            if headers.get("x-amz-sns-rawdelivery") == "true":
                event = json.loads(body)
                line = {"kind": "raw", "id": headers.get("x-amz-sns-message-id"), "event": event}
            else:
                m = json.loads(body)
                verify(m)
                if headers.get("x-amz-sns-message-type") != m["Type"]:
                    raise ValueError("x-amz-sns-message-type differs from Type")
                if m["Type"] == "SubscriptionConfirmation":
                    reply = urllib.request.urlopen(m["SubscribeURL"], timeout=10).read()
                    record({"kind": "confirmation", "id": m["MessageId"], "reply": reply.decode()})
                    return self.answer(200)
                event = json.loads(m["Message"])
                line = {"kind": "notification", "id": m["MessageId"], "event": event,
                        "topic": m["TopicArn"], "unsubscribe": m.get("UnsubscribeURL")}
        except Exception as e:  # anything unverifiable is recorded and refused
            record({"kind": "bad", "error": repr(e)})
            return self.answer(400)
        if os.path.exists(OUT + ".refuse-" + event.get("eventType", "")):
            line["kind"] = "refused"
            record(line)
            return self.answer(400)
        line["headers"] = {k: v for k, v in headers.items() if k.startswith("x-amz-sns") or k == "authorization"}
        record(line)
        self.answer(200)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a sender killed or closing mid-request is part of the tests
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


server = Server(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
