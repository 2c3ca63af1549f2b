"""control.py's request parsing: every malformed line is one readable error."""
import pytest

from scanwatch.sentry.admin.control import parse_request


def test_a_good_request():
    assert parse_request(b'{"cmd": "unblock", "addr": "192.0.2.1"}\n') == {
        "cmd": "unblock", "addr": "192.0.2.1"}


@pytest.mark.parametrize("line, message", [
    (b"\x00\xff garbage\n", "not a JSON request"),
    (b"{\n", "not a JSON request"),
    (b"[1, 2]\n", "a request is a JSON object"),
    (b'"status"\n', "a request is a JSON object"),
    (b"null\n", "a request is a JSON object"),
    (b'{"cmd": 5}\n', 'a request needs "cmd"'),
    (b"", 'a request needs "cmd"'),
])
def test_malformed_requests(line, message):
    with pytest.raises(ValueError, match=message):
        parse_request(line)
