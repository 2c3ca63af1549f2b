"""fleet/link.py's pure parts (the password file, error lines) and wire.py's evidence
mapping; no Redis here (the system tests start a real one)."""
import os

import pytest
import redis

from scanwatch.errors import FleetError
from scanwatch.sentry.fleet import link, wire
from scanwatch.sentry.model import BlockEntry


def secret(tmp_path, text, mode):
    p = tmp_path / "fleet.secret"
    p.write_text(text)
    os.chmod(p, mode)
    return str(p)


def test_password_file_must_be_0600_and_is_stripped(tmp_path):
    assert link.read_password(secret(tmp_path, "s3cret\n", 0o600)) == "s3cret"
    assert link.read_password(secret(tmp_path, "s3cret\n", 0o400)) == "s3cret"
    for mode in (0o644, 0o640, 0o604):
        with pytest.raises(FleetError, match="must be 0600") as ei:
            link.read_password(secret(tmp_path, "s3cret\n", mode))
        assert "s3cret" not in str(ei.value) and "\n" not in str(ei.value)
    assert link.read_password("") is None


def test_password_file_missing_link_or_huge(tmp_path):
    with pytest.raises(FleetError, match="No such file"):
        link.read_password(str(tmp_path / "absent"))
    target = secret(tmp_path, "x\n", 0o600)
    os.symlink(target, tmp_path / "via-link")
    with pytest.raises(FleetError):  # O_NOFOLLOW: a link planted in its place is not read
        link.read_password(str(tmp_path / "via-link"))
    with pytest.raises(FleetError, match="longer than a password"):
        link.read_password(secret(tmp_path, "x" * 5000, 0o600))


@pytest.mark.parametrize("err, have_pw, want", [
    (redis.AuthenticationError("invalid username-password pair"), True, "refused the fleet user's password"),
    (redis.ResponseError("WRONGPASS invalid username-password pair"), False, "no password given"),
    (redis.ResponseError("NOAUTH Authentication required."), True, "no password given"),
    (redis.ResponseError("NOPERM this user has no permissions to run the 'xadd' command"), True,
     "ACL forbids"),
    (redis.ConnectionError("Error 111 connecting to 198.18.1.200:6379. Connection refused."), True,
     "Redis unreachable"),
    (redis.TimeoutError("Timeout reading from socket"), True, "Redis unreachable"),
])
def test_every_redis_error_is_one_line(err, have_pw, want):
    line = link.describe(err, have_pw)
    assert want in line and "\n" not in line


def entry(**kw):
    base = dict(addr="203.0.113.5", since=0.0, expires=None, scan_type="SYN/Normal",
                proto="TCP", port=1, mode="stcp", reason="tripwire")
    base.update(kw)
    return BlockEntry(**base)


def test_evidence_is_the_spoof_guards_strength():
    assert wire.evidence_of(entry(strength="proven")) == "proven"
    assert wire.evidence_of(entry(strength="decoy")) == "decoy"   # never shared (member.py)
    # no strength (EVIDENCE_RESPONSE="portsentry", an old state file): from the evidence
    assert wire.evidence_of(entry(evidence="connect")) == "proven"
    assert wire.evidence_of(entry(evidence="stealth")) == "unverified"
