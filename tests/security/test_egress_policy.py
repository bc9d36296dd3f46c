"""The webhook target policy, called directly: every non-public range is refused without any
request being sent (the live tests use loopback forms only)."""

import ipaddress

import pytest

from common.egress import EgressPolicy, UnsafeTarget, non_public_kind, parse_callback_url, resolve
from common.settings import Settings


def policy_resolving(mapping: dict[str, list[str]], **options) -> EgressPolicy:
    """A policy whose resolver answers from `mapping` (a name → its addresses)."""

    def resolver(host: str, port: int):
        if host not in mapping:
            raise UnsafeTarget(f"host {host!r} does not resolve")
        return [ipaddress.ip_address(a) for a in mapping[host]]

    return EgressPolicy(resolver=resolver, **options)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "private"),  # benchmarking range
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:c0a8:0101::1", "private"),  # 6to4 of 192.168.1.1
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) is None
    policy_resolving({"example.org": [address]}).check_url("https://example.org/hook")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.10:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.1.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_private_link_local_and_metadata_urls_are_refused(url: str) -> None:
    # Addresses given literally still go through the resolver: getaddrinfo returns them unchanged.
    policy = EgressPolicy(resolver=lambda host, port: [ipaddress.ip_address(host)])
    with pytest.raises(UnsafeTarget, match="address"):
        policy.check_url(url)


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    # One good answer does not excuse a bad one: the client could connect to either.
    policy = policy_resolving({"mixed.example": ["93.184.216.34", "10.0.0.7"], "meta.example": ["169.254.169.254"]})
    with pytest.raises(UnsafeTarget, match="private"):
        policy.check_url("http://mixed.example/")
    with pytest.raises(UnsafeTarget, match="link-local"):
        policy.check_url("http://meta.example/")


def test_an_unresolvable_name_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        policy_resolving({}).check_url("http://nowhere.invalid/")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.org/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.org/", "only http and https"),
        ("http://guest:guest@example.org/", "credentials"),
        ("http://user@example.org/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://exa mple.org/", "spaces or control"),
        ("http://example.org/\r\nX: y", "spaces or control"),
        ("http://" + "a" * 3000 + ".org/", "longer than"),
        ("not a url", "spaces or control"),
    ],
)
def test_url_syntax_is_checked_before_any_lookup(url: str, reason: str) -> None:
    with pytest.raises(UnsafeTarget, match=reason):
        parse_callback_url(url)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("2130706433", "loopback"),
        ("0x7f.1", "loopback"),
        ("127.1", "loopback"),
        ("0x7f000001", "loopback"),
        ("localhost", "loopback"),
        ("0177.0.0.1", "not a valid URL"),  # the HTTP client refuses octal forms outright
    ],
)
def test_numeric_and_named_loopback_forms_resolve_to_loopback(host: str, reason: str) -> None:
    # The real resolver, as sockets use it: every spelling is judged by the address it names.
    addresses = resolve(host, 80)
    assert all(address.is_loopback for address in addresses)
    with pytest.raises(UnsafeTarget, match=reason):
        EgressPolicy().check_url(f"http://{host}/")


def test_allowed_networks_let_chosen_ranges_through() -> None:
    allowed = EgressPolicy(
        allowed_networks=(ipaddress.ip_network("10.1.2.0/24"),),
        resolver=lambda host, port: [ipaddress.ip_address(host)],
    )
    allowed.check_url("http://10.1.2.3/hook")
    with pytest.raises(UnsafeTarget, match="private"):
        allowed.check_url("http://10.1.3.3/hook")


def test_own_endpoints_are_refused_even_inside_allowed_networks() -> None:
    settings = Settings(
        _env_file=None, api_public_url="http://127.0.0.1:8123", rabbitmq_host="127.0.0.1",
        s3_endpoint="127.0.0.1:8333", webhook_allowed_networks="127.0.0.0/8",
    )
    policy = EgressPolicy.build(settings.webhook_allowed_networks, settings.own_endpoints)
    for port in (8123, 5672, 15672, 8333):
        with pytest.raises(UnsafeTarget, match="own services"):
            policy.check_url(f"http://127.0.0.1:{port}/dlq/replay")
    with pytest.raises(UnsafeTarget, match="own services"):
        policy.check_url("http://[::ffff:127.0.0.1]:8123/dlq/replay")
    policy.check_url("http://127.0.0.1:9999/hook")  # the tests' own receivers are elsewhere


def test_allowed_networks_setting_must_name_networks() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_NETWORKS"):
        settings = Settings(_env_file=None, webhook_allowed_networks="10.0.0.0/8,intranet")
        EgressPolicy.build(settings.notifier.allowed_networks, [])
