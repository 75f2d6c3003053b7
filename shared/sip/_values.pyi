"""The small header values in C (`_values.c`), present only in the compiled build."""

def is_call_id(text: str, /) -> bool:
    """Whether `text` is a Call-ID (a word, or word@word), as `values._CALL_ID` fullmatches it."""

def cseq_parts(text: str, /) -> tuple[int, str] | None:
    """A plain CSeq's (number, method): ASCII, 1 to 9 digits, a token; None for any other
    text, which `values.parse_cseq` reads in Python."""
