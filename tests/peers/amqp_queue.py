#!/usr/bin/python3
"""A RabbitMQ consumer for the tests, independent of Volley's code (pika).

  amqp_queue.py declare URL EXCHANGE QUEUE BINDING
      declares the exchange (durable topic), a durable queue and binds it
  amqp_queue.py purge URL QUEUE
      empties the queue, printing how many messages it held
  amqp_queue.py drain URL QUEUE OUT
      takes every message of the queue (basic.get, acked after it is
      written), appending one JSON line per message to OUT: message_id,
      routing_key, type, delivery_mode, content_type and the body (parsed
      JSON); an SNS-format body's signature is checked with the
      certificate at its SigningCertURL (Python cryptography) and the
      line's "verified" says so. Prints the number taken.
"""
import base64
import json
import sys
import urllib.request

import pika
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

FIELDS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CERTS = {}


def verified(m):
    url = m["SigningCertURL"]
    if url not in CERTS:
        CERTS[url] = x509.load_pem_x509_certificate(urllib.request.urlopen(url, timeout=10).read())
    text = "".join("%s\n%s\n" % (k, m[k]) for k in FIELDS if k in m).encode()
    try:
        CERTS[url].public_key().verify(base64.b64decode(m["Signature"]), text, padding.PKCS1v15(), hashes.SHA256())
        return True
    except Exception:
        return False


def main():
    cmd, url = sys.argv[1], sys.argv[2]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    if cmd == "declare":
        exchange, queue, binding = sys.argv[3:6]
        ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        ch.queue_declare(queue, durable=True)
        ch.queue_bind(queue, exchange, routing_key=binding)
    elif cmd == "purge":
        print(ch.queue_purge(sys.argv[3]).method.message_count)
    elif cmd == "drain":
        queue, out = sys.argv[3:5]
        n = 0
        with open(out, "a") as f:
            while True:
                method, props, body = ch.basic_get(queue)
                if method is None:
                    break
                doc = json.loads(body)
                line = {
                    "message_id": props.message_id,
                    "routing_key": method.routing_key,
                    "type": props.type,
                    "delivery_mode": props.delivery_mode,
                    "content_type": props.content_type,
                    "body": doc,
                }
                if isinstance(doc, dict) and "Signature" in doc:
                    line["verified"] = verified(doc)
                f.write(json.dumps(line) + "\n")
                f.flush()
                ch.basic_ack(method.delivery_tag)
                n += 1
        print(n)
    conn.close()


main()
