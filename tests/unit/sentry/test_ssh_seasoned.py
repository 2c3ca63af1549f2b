"""SSH peers are spared only for connections older than sshd's LoginGraceTime: a TCP
connection to port 22 that never logs in is dropped by sshd before that, so holding one
cannot make a scanner unblockable (helper finding, issue 13)."""
from scanwatch.sentry import netinfo


def test_a_connection_counts_once_it_outlives_the_grace_time():
    seen, conns = {}, {("L", "R1"): "198.51.100.7"}
    assert netinfo.seasoned(conns, seen, 100.0, 125) == set()
    assert netinfo.seasoned(conns, seen, 224.0, 125) == set()
    assert netinfo.seasoned(conns, seen, 225.0, 125) == {"198.51.100.7"}


def test_a_reconnect_starts_over_and_gone_connections_are_forgotten():
    seen = {}
    netinfo.seasoned({("L", "R1"): "a"}, seen, 0.0, 125)
    # sshd closed the pre-auth connection at its grace time; the scanner connects again
    assert netinfo.seasoned({("L", "R2"): "a"}, seen, 130.0, 125) == set()
    assert list(seen) == [("L", "R2")]


def test_login_grace_time_units(tmp_path):
    conf = tmp_path / "sshd_config"
    for text, want in (("", 120), ("LoginGraceTime 30\n", 30), ("LoginGraceTime 2m\n", 120),
                       ("logingracetime 1h\n", 3600), ("LoginGraceTime 0\n", 600),
                       ("LoginGraceTime bogus\n", 120)):
        conf.write_text(text)
        assert netinfo.login_grace(str(conf)) == want, text
    assert netinfo.login_grace(str(tmp_path / "missing")) == 120
