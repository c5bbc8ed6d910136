#!/usr/bin/env python3
"""A stand-in DNS server for the resolver tests: UDP on a loopback address,
one behaviour for every query.

    --mode nxdomain   answer NXDOMAIN at once (a name that does not exist)
    --mode silent     read every query and never answer (a resolver that hangs)
    --mode delay      answer after --delay-ms: an A question with --answer,
                      any other type with no records (NOERROR)

Every query is logged as one JSON line ({"at": unix_s, "name": ..., "type": N})
to --log. glibc's resolver reaches it through a resolv.conf that names
--addr (the tests bind-mount one over /etc/resolv.conf in a private mount
namespace of the daemon).

The wire format is written here by hand: a reply is the query's header and
question with three fields changed and at most one A record appended (RFC
1035 4.1), about 20 lines, and this file must run under whichever python3
the tests run, with no package beyond the standard library."""

import argparse
import json
import socket
import struct
import threading
import time

TYPE_A = 1


def question(packet):
    """(name, qtype, end offset of the question) of a query packet."""
    labels, i = [], 12
    while packet[i] != 0:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, = struct.unpack("!H", packet[i + 1:i + 3])
    return ".".join(labels), qtype, i + 5


def reply(packet, rcode, address=None):
    qid, flags = struct.unpack("!HH", packet[:4])
    _, qtype, end = question(packet)
    answers = 1 if address and qtype == TYPE_A else 0
    # QR=1, the query's opcode and RD, RA=1, the rcode.
    flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode
    out = struct.pack("!HHHHHH", qid, flags, 1, answers, 0, 0) + packet[12:end]
    if answers:
        # The name as a pointer to the question (offset 12), class IN, TTL 1 s.
        out += struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, 1, 4) + socket.inet_aton(address)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", default="127.0.0.153")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--mode", choices=("nxdomain", "silent", "delay"), required=True)
    p.add_argument("--delay-ms", type=int, default=1000)
    p.add_argument("--answer", default="127.0.0.1")
    p.add_argument("--log", required=True)
    p.add_argument("--ready-file", help="written once the socket is bound")
    a = p.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a.addr, a.port))
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write("ok\n")
    log = open(a.log, "a", buffering=1)
    lock = threading.Lock()

    def send_later(packet, peer):
        time.sleep(a.delay_ms / 1000)
        with lock:
            sock.sendto(reply(packet, 0, a.answer), peer)

    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            name, qtype, _ = question(packet)
        except (IndexError, struct.error):
            continue
        log.write(json.dumps({"at": time.time(), "name": name, "type": qtype}) + "\n")
        if a.mode == "nxdomain":
            with lock:
                sock.sendto(reply(packet, 3), peer)
        elif a.mode == "delay":
            threading.Thread(target=send_later, args=(packet, peer), daemon=True).start()


if __name__ == "__main__":
    main()
