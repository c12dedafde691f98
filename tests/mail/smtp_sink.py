"""A real SMTP server for Sekimori's mail tests (tests/it/mail.rs), built on aiosmtpd.

    python3 tests/mail/smtp_sink.py PORT DIR

Listens on 127.0.0.1:PORT and prints "ready" once it does. Each message received is parsed
with Python's email package and written to DIR as one JSON file: the envelope, the headers
(decoded, and the Subject also as it came over the wire) and the decoded text body.
Recipients whose address begins with "reject-" are refused with 550, as a relay refuses an
unknown mailbox. Exits with status 3 when aiosmtpd is not installed.
"""

import email
import json
import os
import sys
import threading
import time
import uuid
from email import policy

try:
    from aiosmtpd.controller import Controller
except ImportError:
    sys.stderr.write("aiosmtpd is not installed: pip install aiosmtpd\n")
    sys.exit(3)


class Sink:
    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject-"):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=policy.default)
        wire = email.message_from_bytes(raw, policy=policy.compat32)
        sender = message["From"].addresses[0]
        body = message.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from_name": sender.display_name,
            "from_address": sender.addr_spec,
            "to": [a.addr_spec for a in message["To"].addresses],
            "subject": str(message["Subject"]),
            "subject_on_the_wire": wire["Subject"],
            "message_id": message["Message-ID"],
            "auto_submitted": message["Auto-Submitted"],
            "date": message["Date"],
            "content_type": message.get_content_type(),
            "charset": message.get_content_charset(),
            "transfer_encoding": message["Content-Transfer-Encoding"],
            # SMTP carries lines ended with CRLF; the text as written has LF.
            "body": body.get_content().replace("\r\n", "\n") if body is not None else None,
        }
        name = f"{time.time_ns()}-{uuid.uuid4().hex}"
        partial = os.path.join(self.directory, name + ".part")
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(partial, os.path.join(self.directory, name + ".json"))
        return "250 Message accepted"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
