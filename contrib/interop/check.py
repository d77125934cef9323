#!/usr/bin/env python3
"""Reader checks for contrib/interop/run.sh: reads what lmtpd wrote with Python's `mailbox`
module and Dovecot's doveadm and compares every message with what was sent.

Every message the suite sends carries an `X-Interop-Id: ID` header and is kept as
SENT/ID.msg; a stored copy with that header must have exactly the body that was sent
(byte for byte, LF line endings). Messages from smtp-source (Subject: interop smtp-source)
must all have the same body; the Postfix burst's (X-Burst: N) must read "burst message N"
and each N arrive once. Anything else (bounce reports) must parse.

  check.py maildir SENT PATH=N ...     Maildir (and its Maildir++ folders) with N messages
  check.py mbox SENT PATH=N ...        mboxrd file with N messages (From_-quoting undone)
  check.py doveadm SENT CONF USER LOCATION MAILBOX=N ...   (USER only names the user)
                                       doveadm lists the mailboxes with N messages each and
                                       fetches bodies identical to what was sent
  check.py doveadm-mbox ...            the same for an mbox; a body that differs only by the
                                       mboxrd quoting of its From_ lines is counted and named
  check.py quota CONF USER LOCATION MAILDIR
                                       doveadm quota get reports the maildirsize totals

Prints one summary line on stdout; problems on stdout too; exit status 1 on any problem.
"""
import email.parser
import email.policy
import json
import mailbox
import os
import re
import subprocess
import sys

problems = []


def problem(msg):
    if len(problems) < 20:
        print("    " + msg)
    problems.append(msg)


def load_sent(sent_dir):
    sent = {}
    for name in os.listdir(sent_dir):
        if name.endswith(".msg"):
            with open(os.path.join(sent_dir, name), "rb") as f:
                raw = f.read().replace(b"\r\n", b"\n")
            sent[name[:-4]] = split(raw)[1]
    return sent


def split(raw):
    """(header bytes, body bytes) of a message with LF line endings."""
    raw = raw.replace(b"\r\n", b"\n")
    if raw.startswith(b"\n"):
        return b"", raw[1:]
    i = raw.find(b"\n\n")
    if i < 0:
        return raw, b""
    return raw[: i + 1], raw[i + 2 :]


def header(head, name):
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\n")
    v = msg.get(name)
    return None if v is None else str(v).strip()


MBOXRD_QUOTED = re.compile(rb"^>(>*From )", re.M)


def mboxrd_quote(body):
    return re.sub(rb"^(>*From )", rb">\1", body, flags=re.M)


class Tally:
    def __init__(self, sent):
        self.sent = sent
        self.quoted = 0
        self.total = 0
        self.compared = 0
        self.source_bodies = {}
        self.bursts = set()
        # A reader that returns an mbox's lines as stored (Dovecot) shows the mboxrd quoting.
        self.mboxrd_verbatim = False

    def check(self, where, raw):
        self.total += 1
        head, body = split(raw)
        ident = header(head, "X-Interop-Id")
        subject = header(head, "Subject") or ""
        if ident is not None:
            if ident not in self.sent:
                problem(f"{where}: X-Interop-Id {ident} was never sent")
            elif self.mboxrd_verbatim and self.sent[ident] != body and mboxrd_quote(self.sent[ident]) == body:
                self.compared += 1
                self.quoted += 1
            elif self.sent[ident] != body:
                problem(f"{where}: body of {ident} differs from what was sent "
                        f"({len(body)} vs {len(self.sent[ident])} bytes)")
            else:
                self.compared += 1
        elif header(head, "X-Burst") is not None:
            n = header(head, "X-Burst")
            if body != f"burst message {n}\n".encode():
                problem(f"{where}: burst message {n} has body {body[:60]!r}")
            elif n in self.bursts:
                problem(f"{where}: burst message {n} stored twice")
            else:
                self.bursts.add(n)
        elif subject.startswith("interop smtp-source"):
            self.source_bodies[body] = self.source_bodies.get(body, 0) + 1
        elif not head:
            problem(f"{where}: no header section")

    def summary(self):
        extra = ""
        if self.source_bodies:
            n = sum(self.source_bodies.values())
            if len(self.source_bodies) != 1:
                problem(f"smtp-source messages have {len(self.source_bodies)} different bodies")
            extra = f", {n} smtp-source messages with one identical body"
        if self.bursts:
            extra += f", {len(self.bursts)} distinct burst messages with their bodies"
        if self.quoted:
            extra += (f" ({self.quoted} of them only with their '>*From ' lines still "
                      f"mboxrd-quoted: this reader does not undo the quoting)")
        return f"{self.total} messages read, {self.compared} identical to what was sent{extra}"


def expect(spec):
    path, _, n = spec.rpartition("=")
    return path, int(n)


def cmd_maildir(sent_dir, specs):
    t = Tally(load_sent(sent_dir))
    for spec in specs:
        path, want = expect(spec)
        md = mailbox.Maildir(path, factory=None, create=False)
        boxes = [("INBOX", md)] + [(f, md.get_folder(f)) for f in md.list_folders()]
        n = 0
        for name, box in boxes:
            for key in box.keys():
                t.check(f"{path} {name} {key}", box.get_bytes(key))
                n += 1
        if n != want:
            problem(f"{path}: {n} messages, expected {want}")
    return t.summary()


def cmd_mbox(sent_dir, specs):
    t = Tally(load_sent(sent_dir))
    for spec in specs:
        path, want = expect(spec)
        box = mailbox.mbox(path, factory=None, create=False)
        n = 0
        for key in box.keys():
            # Python's reader leaves the mboxrd quoting in place: undo it (one '>' less on
            # every >+From line), as an mboxrd reader does.
            raw = MBOXRD_QUOTED.sub(rb"\1", box.get_bytes(key))
            t.check(f"{path} #{key}", raw)
            n += 1
        if n != want:
            problem(f"{path}: {n} messages, expected {want}")
    return t.summary()


def doveadm(conf, location, user, *args, fmt=None):
    """Runs doveadm for USER without a userdb lookup (no auth service): the configuration
    sets mail_uid/mail_gid to the mailbox owner."""
    cmd = ["doveadm", "-c", conf, "-o", "mail_location=" + location]
    if fmt:
        cmd[1:1] = ["-f", fmt]
    cmd += list(args)
    env = dict(os.environ, USER=user)
    r = subprocess.run(cmd, capture_output=True, env=env)
    if r.returncode != 0:
        problem(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[:300]}")
        return None
    return r.stdout


def cmd_doveadm(sent_dir, conf, user, location, specs, mbox=False):
    t = Tally(load_sent(sent_dir))
    t.mboxrd_verbatim = mbox
    out = doveadm(conf, location, user, "mailbox", "list")
    listed = set() if out is None else set(out.decode().split())
    for spec in specs:
        name, want = expect(spec)
        if name not in listed:
            problem(f"doveadm mailbox list ({user}): no {name} (got {sorted(listed)})")
            continue
        out = doveadm(conf, location, user, "mailbox", "status", "messages", name, fmt="flow")
        got = None if out is None else out.decode().strip()
        m = re.search(r"messages=(\d+)", got or "")
        if not m or int(m.group(1)) != want:
            problem(f"doveadm mailbox status {user} {name}: {got!r}, expected messages={want}")
        out = doveadm(conf, location, user, "fetch", "text", "mailbox", name, "all", fmt="json")
        if out is None:
            continue
        for i, m in enumerate(json.loads(out.decode("utf-8", errors="surrogateescape"))):
            t.check(f"doveadm {user} {name} #{i + 1}", m["text"].encode("utf-8", errors="surrogateescape"))
    return t.summary()


def cmd_quota(conf, user, location, maildir):
    with open(os.path.join(maildir, "maildirsize"), "rb") as f:
        lines = f.read().decode().splitlines()
    limits = {}
    for w in lines[0].split(","):
        if w.endswith("S"):
            limits["STORAGE"] = int(w[:-1])
        elif w.endswith("C"):
            limits["MESSAGE"] = int(w[:-1])
    used_bytes = used_msgs = 0
    for line in lines[1:]:
        if line.strip():
            b, c = line.split()
            used_bytes += int(b)
            used_msgs += int(c)
    disk_bytes = disk_msgs = 0
    for root, dirs, files in os.walk(maildir):
        if os.path.basename(root) in ("new", "cur"):
            for fn in files:
                disk_bytes += os.path.getsize(os.path.join(root, fn))
                disk_msgs += 1
    if (used_bytes, used_msgs) != (disk_bytes, disk_msgs):
        problem(f"maildirsize says {used_bytes} bytes/{used_msgs} messages, "
                f"the Maildir holds {disk_bytes}/{disk_msgs}")
    out = doveadm(conf, location, user, "quota", "get", fmt="tab")
    if out is None:
        return "doveadm quota get failed"
    rows = [r.split("\t") for r in out.decode().splitlines()]
    head, rows = rows[0], rows[1:]
    got = {}
    for r in rows:
        d = dict(zip(head, r))
        got[d["Type"]] = (int(d["Value"]), d["Limit"])
    # doveadm prints storage in KiB, rounded up.
    want_kib = (used_bytes + 1023) // 1024
    st = got.get("STORAGE")
    ms = got.get("MESSAGE")
    if st is None or st[0] != want_kib:
        problem(f"doveadm STORAGE {st}, maildirsize has {used_bytes} bytes (~{want_kib} KiB)")
    if ms is None or ms[0] != used_msgs:
        problem(f"doveadm MESSAGE {ms}, maildirsize has {used_msgs}")
    if "STORAGE" in limits and (st is None or st[1] != str(limits["STORAGE"] // 1024)):
        problem(f"doveadm STORAGE limit {st}, maildirsize limit {limits['STORAGE']} bytes")
    if "MESSAGE" in limits and (ms is None or ms[1] != str(limits["MESSAGE"])):
        problem(f"doveadm MESSAGE limit {ms}, maildirsize limit {limits['MESSAGE']}")
    return (f"maildirsize {used_bytes} bytes/{used_msgs} messages = disk; doveadm reports "
            f"STORAGE {st[0] if st else '?'} KiB of {st[1] if st else '?'}, "
            f"MESSAGE {ms[0] if ms else '?'} of {ms[1] if ms else '?'}")


def main(argv):
    cmd = argv[1]
    if cmd == "maildir":
        s = cmd_maildir(argv[2], argv[3:])
    elif cmd == "mbox":
        s = cmd_mbox(argv[2], argv[3:])
    elif cmd == "doveadm":
        s = cmd_doveadm(argv[2], argv[3], argv[4], argv[5], argv[6:])
    elif cmd == "doveadm-mbox":
        s = cmd_doveadm(argv[2], argv[3], argv[4], argv[5], argv[6:], mbox=True)
    elif cmd == "quota":
        s = cmd_quota(argv[2], argv[3], argv[4], argv[5])
    else:
        sys.exit(f"unknown command {cmd}")
    print(s + (f"; {len(problems)} problems" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
