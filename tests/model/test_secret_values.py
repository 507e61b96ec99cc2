"""A Secret's values never appear in a message; ``data`` must be base64."""

import pytest

from tierserve.errors import ValidationError
from tierserve.model import Secret, load_documents


def secret(body: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: oss}}\n{body}\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_documents(text, "f.yaml")
    return [e.render() for e in info.value.errors]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "stringData: {akSecret: 884213377120}",
            "Secret oss: stringData.akSecret: (value not shown): input should be a valid string",
        ),
        (
            "stringData: {nested: {user: hunter2}}",
            "Secret oss: stringData.nested: (value not shown): input should be a valid string",
        ),
        (
            "data: {akSecret: hunter2-not-base64}",
            "Secret oss: data.akSecret: not valid base64 (value not shown); expected the "
            "value base64-encoded with padding, or given as plain text under stringData",
        ),
        (
            "data: {akSecret: [hunter2]}",
            "Secret oss: data.akSecret: (value not shown): input should be a valid string",
        ),
        (
            "stringData: hunter2",
            "Secret oss: stringData: (value not shown): input should be a valid dictionary",
        ),
        (
            "data: {'bad key': aHVudGVyMg==}",
            "Secret oss: data: key 'bad key' is not a valid Secret key: expected at most 253 "
            "letters, digits, '-', '_' or '.'",
        ),
    ],
)
def test_errors_name_the_key_never_the_value(body: str, expected: str) -> None:
    errors = errors_of(secret(body))
    assert errors == [expected]
    assert all("hunter2" not in e and "884213377120" not in e for e in errors)


def test_valid_base64_and_string_data_load() -> None:
    (obj,) = load_documents(secret("data: {akId: aHVudGVyMg==}\nstringData: {akSecret: x}"))
    assert isinstance(obj, Secret) and obj.data == {"akId": "aHVudGVyMg=="}
    assert "aHVudGVyMg==" not in repr(obj)
