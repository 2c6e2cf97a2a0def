"""What schemathesis cannot know from /openapi.json alone, because OpenAPI cannot say it:

- the two identifier formats the document names, `personnummer` and `organisationsnummer`.
  Both end in a Luhn check digit, which no pattern can express, so without these a fuzzer's
  "valid" number is almost always refused (422), and the refusal would be counted as the API
  rejecting valid data;
- a rule across parameters that the document states in words: `GET /v1/tags` names a
  client or a tag (BAD_REQUEST without either). Generated requests without either are
  dropped, not sent as "valid" ones. (The other such rule, a tag not removed before it is
  installed, is in schemathesis.toml: the hooks do not reach every phase's bodies.)

Loaded by tests/contract.rs through SCHEMATHESIS_HOOKS.
"""

import pathlib

import schemathesis
from hypothesis import strategies as st

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "skatteverket-testpersonnummer.txt"


def luhn_digit(digits):
    total = 0
    for i, d in enumerate(int(c) for c in digits):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


# Skatteverket's test numbers: valid, and nobody's.
PERSONNUMMER = [line.strip() for line in DATA.read_text().splitlines() if line.strip()]

# An organisation number: ten digits, the third at least 2, the last a Luhn digit.
ORGANISATIONSNUMMER = st.tuples(
    st.text("0123456789", min_size=2, max_size=2),
    st.sampled_from("23456789"),
    st.text("0123456789", min_size=6, max_size=6),
).map(lambda t: "".join(t)).map(lambda nine: nine + luhn_digit(nine))

schemathesis.openapi.format("personnummer", st.sampled_from(PERSONNUMMER))
schemathesis.openapi.format("organisationsnummer", ORGANISATIONSNUMMER)


@schemathesis.hook("filter_query").apply_to(operation_id="list_tags")
def tags_name_a_client_or_a_tag(ctx, query):
    return isinstance(query, dict) and ("client" in query or "tag" in query)

