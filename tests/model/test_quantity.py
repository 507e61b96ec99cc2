import pytest

from tierserve.model.quantity import QuantityError, format_milli, parse_milli


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        ("4", 4_000),
        (4, 4_000),
        ("500m", 500),
        ("0.5", 500),
        ("12Gi", 12 * 2**30 * 1000),  # 12 * 1024^3 bytes
        ("64Gi", 64 * 2**30 * 1000),
        ("100Mi", 100 * 2**20 * 1000),
        ("1k", 1_000_000),  # 1 * 10^3, in milli
        ("1e3", 1_000_000),
        ("1.5Gi", 1536 * 2**20 * 1000),
        ("4Ti", 4 * 2**40 * 1000),
        ("100u", 1),  # 0.0001 rounds up to one milli-unit, as Kubernetes does
        ("0", 0),
    ],
)
def test_parse_milli(text: str | int, milli: int) -> None:
    assert parse_milli(text) == milli


@pytest.mark.parametrize("text", ["", "abc", "12Gb", "1.2.3", "Gi", "--1", "1 Gi"])
def test_parse_rejects_non_quantities(text: str) -> None:
    with pytest.raises(QuantityError, match="is not a Kubernetes quantity"):
        parse_milli(text)


def test_bool_is_not_a_quantity() -> None:
    with pytest.raises(QuantityError):
        parse_milli(True)


@pytest.mark.parametrize(
    ("text", "binary", "canonical"),
    [
        ("500m", False, "500m"),
        ("4", False, "4"),
        ("1000", False, "1k"),
        ("12Gi", True, "12Gi"),
        ("1.5Gi", True, "1536Mi"),
        ("4Ti", True, "4Ti"),
        ("16", False, "16"),
    ],
)
def test_format_round_trips(text: str, binary: bool, canonical: str) -> None:
    assert format_milli(parse_milli(text), binary=binary) == canonical
    assert parse_milli(canonical) == parse_milli(text)
