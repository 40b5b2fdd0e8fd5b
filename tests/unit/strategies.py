"""Text strategies shared by the property tests: the inputs that break hand-written parsers."""

from __future__ import annotations

from hypothesis import strategies as st

# Characters str.isdigit() or the regex `\d` take but int() may not (or should not): a
# superscript, Arabic-Indic, fullwidth and Devanagari digits.
UNICODE_DIGITS = "\u00b2\u00b3\u00b9\u0660\u0661\u0663\u0668\u0669\uff10\uff19\u0966"
# Whitespace a `$` or strip() treats specially: newline before end, tab, no-break space.
AWKWARD_SPACE = "\n\t \u00a0\r"
# Python's int() refuses decimal strings of more than 4,300 digits (ValueError).
INT_DIGIT_LIMIT = 4300


def huge_digits() -> st.SearchStrategy[str]:
    """A decimal string past int()'s limit, sometimes behind leading zeros."""
    return st.builds(
        lambda zeros, body: "0" * zeros + body,
        st.sampled_from([0, 0, 5000]),
        st.integers(INT_DIGIT_LIMIT + 1, 5000).map(lambda n: "9" * n),
    )


def digits() -> st.SearchStrategy[str]:
    """Digit strings: short ASCII (maybe empty), 5,000 long, or with a non-ASCII digit."""
    return st.one_of(
        st.text(alphabet="0123456789", max_size=6),
        huge_digits(),
        st.text(alphabet="0123456789" + UNICODE_DIGITS, min_size=1, max_size=4),
    )


def awkward_text(alphabet: str = "") -> st.SearchStrategy[str]:
    """Arbitrary text, plus text drawn mostly from a grammar's own characters and from
    unicode digits and awkward whitespace, plus the same with a trailing newline."""
    near = st.text(alphabet=alphabet + UNICODE_DIGITS + AWKWARD_SPACE, max_size=40)
    base = st.one_of(st.text(max_size=40), near, huge_digits())
    return st.one_of(base, base.map(lambda text: text + "\n"))
