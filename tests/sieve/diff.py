#!/usr/bin/env python3
"""Differential Sieve tests: lmtpd's engine against Pigeonhole's sieve-test.

Every case of cases.txt (script x message x envelope) runs through Debian's `sieve-test`
(dovecot-sieve) and, when given, through `lmtpd sieve test`; both outputs are normalised to
a canonical action list (see normalise()) and compared with each other and with the
recording in expected/<id>.txt. Differences listed in deviations.txt (case id, then the
RFC reason) are reported but do not fail the run.

    python3 tests/sieve/diff.py [--lmtpd target/debug/lmtpd] [--record] [--only SUBSTR]

--record rewrites expected/ from Pigeonhole. Without --lmtpd only Pigeonhole is checked
against the recordings (the Rust test `sieve_corpus_matches_pigeonhole_recordings` checks
our side against them). Exit status: 0 when every difference is listed, 1 otherwise, 2 on
a usage or setup error. Standard library only.
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FROM = "sender@example.org"
DEFAULT_TO = "rcpt@example.com"


def read_cases(only):
    cases = []
    with open(os.path.join(HERE, "cases.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            while len(parts) < 6:
                parts.append("-")
            cid, script, message, frm, to, orcpt = parts[:6]
            if only and only not in cid:
                continue
            cases.append({
                "id": cid,
                "script": script,
                "message": message,
                "from": DEFAULT_FROM if frm == "-" else frm,
                "to": DEFAULT_TO if to == "-" else to,
                "orcpt": None if orcpt == "-" else orcpt,
            })
    return cases


def read_deviations():
    devs = {}
    path = os.path.join(HERE, "deviations.txt")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    cid, _, reason = line.partition(" ")
                    devs[cid] = reason.strip()
    return devs


def read_folders():
    with open(os.path.join(HERE, "folders.txt"), encoding="utf-8") as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def normalise(stdout, stderr):
    """The canonical, sorted action list of one run, from either tool's output.

    store FOLDER [create] [flags=f1,f2]   an explicit keep or fileinto (flags lower-cased, sorted)
    implicit-keep FOLDER [flags=...]      the implicit keep
    reject REASON / discard               those actions (discard only when nothing is stored)
    compile-error                         the script did not compile (nothing else)
    runtime-error                         the run failed; the message is kept in INBOX
    """
    if "failed to compile" in stderr:
        return ["compile-error"]
    if "final result: failed" in stderr:
        return ["implicit-keep INBOX", "runtime-error"]
    out = []
    section = None
    current = None

    def flush():
        if current is not None:
            out.append(current["text"] + ("".join(current["extra"])))

    reason = None  # inside a vacation's START MESSAGE .. END MESSAGE block
    for raw in stdout.splitlines():
        line = raw.rstrip()
        if reason is not None:
            if line == "END MESSAGE":
                if current is not None:
                    current["extra"].append(" reason=" + reason_text(" ".join(reason)))
                reason = None
            else:
                reason.append(line)
            continue
        if line == "START MESSAGE":
            reason = []
            continue
        if (not line.startswith(" ") and line.endswith(":")
                and line not in ("Performed actions:", "Implicit keep:")):
            # Another section (lmtpd sieve test's "Would send"): not an outcome.
            flush(); current = None; section = None; continue
        if line == "Performed actions:":
            flush(); current = None; section = "performed"; continue
        if line == "Implicit keep:":
            flush(); current = None; section = "implicit"; continue
        if section is None or not line.strip() or line.strip() == "(none)":
            continue
        if line.startswith(" * "):
            flush(); current = None
            item = line[3:]
            if item.startswith("send vacation message"):
                current = {"text": "vacation", "extra": []}
                continue
            if item.startswith("track duplicate"):
                current = {"text": "track-duplicate", "extra": []}
                continue
            m = re.match(r"store message in folder: (.*)$", item)
            if m:
                kind = "store" if section == "performed" else "implicit-keep"
                current = {"text": f"{kind} {m.group(1)}", "extra": []}
                continue
            m = re.match(r"(?:e?reject) message with reason: (.*)$", item)
            if m:
                current = {"text": "reject " + reason_text(m.group(1)), "extra": []}
                continue
            current = {"text": item.strip(), "extra": []}
            continue
        if current is not None and line.strip().startswith("=> "):
            key, _, value = line.strip()[3:].partition(":")
            current["extra"].append(f" {key.strip()}={value.strip()}")
            continue
        if current is not None and line.strip().startswith("+ "):
            detail = line.strip()[2:]
            if detail == "create mailbox if it does not exist":
                current["extra"].insert(0, " create")
            elif detail.startswith("add IMAP flags: "):
                flags = sorted(set(f.lower() for f in detail[len("add IMAP flags: "):].split()))
                current["extra"].append(" flags=" + ",".join(flags))
            elif detail == "preserve implicit keep":
                pass  # shown by the implicit keep section itself
            else:
                current["extra"].append(" [" + detail + "]")
            continue
        # Continuation lines of ignored actions (vacation bodies) and anything else.
    flush()
    # Pigeonhole lists a discard next to the copies stored anyway; our outcome lists only a
    # discard that decides the result (RFC 5228 4.4: discard just cancels the implicit keep).
    if any(l.startswith(("store ", "implicit-keep ")) for l in out):
        out = [l for l in out if l != "discard"]
    return sorted(out)


def reason_text(reason):
    """A reject reason compared loosely: sieve-test prints each CR and LF as '?', lmtpd's
    render() a space; runs of both (and of white space) become one space."""
    return re.sub(r"[?\s]+", " ", reason).strip()


class Pigeonhole:
    """sieve-test run without a Dovecot installation: a minimal config in a scratch dir."""

    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="sieve-diff-")
        os.chmod(self.dir, 0o755)
        for sub in ("scripts", "messages", "global"):
            shutil.copytree(os.path.join(HERE, sub), os.path.join(self.dir, sub))
        mail = os.path.join(self.dir, "mail")
        os.mkdir(mail)
        for folder in read_folders():
            if folder.upper() != "INBOX":
                os.mkdir(os.path.join(mail, "." + folder))
        self.conf = os.path.join(self.dir, "dovecot.conf")
        user = "nobody" if os.geteuid() == 0 else None
        with open(self.conf, "w", encoding="utf-8") as f:
            if user:
                f.write("mail_uid = nobody\nmail_gid = nogroup\n")
            f.write("first_valid_uid = 1\nfirst_valid_gid = 1\n")
            f.write(f"mail_location = maildir:{mail}\n")
            f.write("plugin {\n")
            f.write(f"  sieve = file:{self.dir}/scripts;active={self.dir}/no-active.sieve\n")
            f.write(f"  sieve_global = {self.dir}/global\n")
            f.write("  sieve_extensions = +editheader +vacation-seconds\n")
            f.write("}\n")
        for root, dirs, files in os.walk(self.dir):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777)
            for n in files:
                os.chmod(os.path.join(root, n), 0o644)

    def command(self, case):
        cmd = [self.binary, "-c", self.conf, "-f", case["from"], "-r", case["to"]]
        if case["orcpt"]:
            cmd += ["-a", case["orcpt"]]
        cmd += [os.path.join(self.dir, "scripts", case["script"] + ".sieve"),
                os.path.join(self.dir, "messages", case["message"] + ".eml")]
        return cmd

    def run(self, case):
        p = subprocess.run(self.command(case), capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, TZ="UTC"))
        if p.returncode not in (0, 1, 89):
            raise RuntimeError(f"{case['id']}: sieve-test exit {p.returncode}: {p.stderr.strip()}")
        return normalise(p.stdout, p.stderr)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def lmtpd_command(binary, case):
    cmd = [binary, "sieve", "test",
           os.path.join(HERE, "scripts", case["script"] + ".sieve"),
           os.path.join(HERE, "messages", case["message"] + ".eml"),
           "--from", case["from"], "--to", case["to"],
           "--global-dir", os.path.join(HERE, "global")]
    if case["orcpt"]:
        cmd += ["--orcpt", case["orcpt"]]
    for folder in read_folders():
        cmd += ["--folder", folder]
    return cmd


def run_lmtpd(binary, case):
    p = subprocess.run(lmtpd_command(binary, case), capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, TZ="UTC"))
    return normalise(p.stdout, p.stderr)


def read_expected(cid):
    path = os.path.join(HERE, "expected", cid + ".txt")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lmtpd", help="the lmtpd binary (runs `lmtpd sieve test`)")
    ap.add_argument("--sieve-test", default=shutil.which("sieve-test"), help="Pigeonhole's sieve-test")
    ap.add_argument("--record", action="store_true", help="rewrite expected/ from Pigeonhole")
    ap.add_argument("--only", help="only cases whose id contains this")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args()
    if not args.sieve_test:
        print("diff.py: sieve-test not found (apt-get install dovecot-sieve dovecot-core)", file=sys.stderr)
        return 2
    cases = read_cases(args.only)
    devs = read_deviations()
    ph = Pigeonhole(args.sieve_test)
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as ex:
            theirs = list(ex.map(ph.run, cases))
            ours = list(ex.map(lambda c: run_lmtpd(args.lmtpd, c), cases)) if args.lmtpd else [None] * len(cases)
    finally:
        ph.close()

    if args.record:
        os.makedirs(os.path.join(HERE, "expected"), exist_ok=True)
        for case, result in zip(cases, theirs):
            with open(os.path.join(HERE, "expected", case["id"] + ".txt"), "w", encoding="utf-8") as f:
                f.write("".join(l + "\n" for l in result))
        print(f"recorded {len(cases)} cases from {args.sieve_test}")

    failures = 0
    listed = 0
    rows = []
    for case, ph_res, our_res in zip(cases, theirs, ours):
        cid = case["id"]
        expected = read_expected(cid)
        if expected is not None and expected != ph_res:
            rows.append((cid, "recording", "; ".join(expected), "; ".join(ph_res)))
            failures += 1
        if our_res is not None and our_res == ph_res and cid in devs:
            rows.append((cid, "stale", "; ".join(ph_res), "same now: remove it from deviations.txt"))
        if our_res is not None and our_res != ph_res:
            if cid in devs:
                listed += 1
                rows.append((cid, "deviation", "; ".join(ph_res), "; ".join(our_res) + "   # " + devs[cid]))
            else:
                failures += 1
                rows.append((cid, "DIFF", "; ".join(ph_res), "; ".join(our_res)))
    if rows:
        print(f"{'case':40} {'kind':10} {'pigeonhole (or recording)':45} lmtpd (or live pigeonhole)")
        for cid, kind, a, b in rows:
            print(f"{cid:40} {kind:10} {a:45} {b}")
    same = len(cases) - failures - listed
    print(f"sieve corpus: {len(cases)} cases, {same} same, {listed} listed deviations, {failures} differences"
          + ("" if args.lmtpd else " (Pigeonhole against the recordings only; pass --lmtpd to compare lmtpd)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
