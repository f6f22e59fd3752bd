#!/usr/bin/env bash
# Installs the peers the integration tests use, from Debian's packages:
#   postfix        -> /usr/sbin/smtp-sink (the independent receiving SMTP server)
#   python3-dkim   -> dkimpy, the independent DKIM verifier (tests/peers/verify_dkim.py)
#   python3-nacl   -> Ed25519 support in dkimpy
#   openssl        -> self-signed certificates for the STARTTLS test server
#   prometheus     -> promtool: `promtool check metrics` on a /metrics scrape
#   python3-prometheus-client -> its OpenMetrics parser checks the
#                     OpenMetrics scrape (promtool reads only the text format)
#   python3-cryptography -> the SNS endpoint of the webhook tests checks every
#                     signature with it (tests/peers/sns_receiver.py)
#   rabbitmq-server, python3-pika -> the broker of the amqp destination tests
#                     (each test runs its own on private ports; the system
#                     service is not started) and their consumer
#   swaks          -> a real SMTP client for the submission tests (Python's
#                     smtplib is the other); libnet-ssleay-perl and
#                     libio-socket-ssl-perl give it STARTTLS (only recommended
#                     by the package, so not pulled in here)
# From PyPI, for the `python3` first on PATH (the SES API tests):
#   boto3, awscli  -> the AWS SDK for Python and the AWS CLI, pointed at
#                     Volley's SES v2 API (tests/tests/ses_api.rs)
# Postfix is installed with debconf "No configuration": nothing is started.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
PKGS="postfix python3-dkim python3-nacl openssl prometheus python3-prometheus-client python3-cryptography rabbitmq-server python3-pika swaks libnet-ssleay-perl libio-socket-ssl-perl"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing:$missing"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "postfix postfix/mailname string localhost" | $SUDO debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
    $SUDO apt-get update -q
  fi
  # installing rabbitmq-server must not start a system broker: deny
  # service starts for the length of the install (unless a policy exists)
  POLICY=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    made_policy=1
  fi
  $SUDO apt-get install -y -q --no-install-recommends $missing || { [ -n "$made_policy" ] && $SUDO rm -f "$POLICY"; exit 1; }
  [ -n "$made_policy" ] && $SUDO rm -f "$POLICY"
fi
test -x /usr/sbin/smtp-sink || { echo "smtp-sink missing after install" >&2; exit 1; }
/usr/bin/python3 -c 'import dkim, nacl' || { echo "dkimpy/pynacl missing after install" >&2; exit 1; }
command -v promtool >/dev/null || { echo "promtool missing after install" >&2; exit 1; }
/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' || { echo "prometheus_client missing after install" >&2; exit 1; }
/usr/bin/python3 -c 'import cryptography' || { echo "python3-cryptography missing after install" >&2; exit 1; }
/usr/bin/python3 -c 'import pika' || { echo "python3-pika missing after install" >&2; exit 1; }
test -x /usr/lib/rabbitmq/bin/rabbitmq-server || { echo "rabbitmq-server missing after install" >&2; exit 1; }
command -v swaks >/dev/null || { echo "swaks missing after install" >&2; exit 1; }
perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || { echo "swaks's TLS modules (Net::SSLeay, IO::Socket::SSL) missing after install" >&2; exit 1; }
# boto3 and the AWS CLI for the `python3` on PATH (pip; PyPI only)
if ! python3 -c 'import boto3' 2>/dev/null || ! command -v aws >/dev/null; then
  echo "installing from PyPI: boto3 awscli"
  python3 -m pip install --quiet boto3 awscli 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages boto3 awscli
  hash -r
fi
python3 -c 'import boto3' || { echo "boto3 missing after install" >&2; exit 1; }
command -v aws >/dev/null || { echo "the AWS CLI (aws) missing after install" >&2; exit 1; }
echo "test peers ready: $(dpkg-query -W -f='${Package} ${Version}  ' $PKGS)"
