"""Personal data in free text: names, e-mail addresses, phone numbers, dates of birth.

Rules, not a model (fast enough to stream 100 MB and explainable in a report):

- e-mail: ``local@domain.tld``;
- phone: North-American ``(555) 123-4567`` / ``555-123-4567`` / ``555.123.4567`` with an
  optional ``+1``, and international ``+44 20 7946 0958`` style (a ``+``, a country code and
  8+ more digits in groups);
- date of birth: "date of birth", "DOB", "birthdate", "born on/in" followed by a date (numeric
  or with a month name) or a year;
- names: a labelled name ("Name: Jane Doe", "Patient: ..."), a self-introduction or greeting
  with a first name ("my name is Maria", "Hi Robert,"), or a first name followed by a surname
  from the US census lists Faker ships (e.g. "Linda Martinez"). Capitalised clinical words
  ("Dawn", "Grace") only count when followed by a listed surname.

Each finding is (kind, matched text); the matched text is masked in reports (first character
and length) so a report does not repeat the personal data it found.
"""

from __future__ import annotations

import re
from functools import lru_cache

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_DIGIT_RUN = re.compile(r"[+(]?\d[\d \t().-]{8,}\d")  # where a phone number could be: checked further
PHONE = re.compile(r"(?<![\w/.-])(?:(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
                   r"|\+\d{1,3}(?:[\s.-]?\d{2,4}){3,5})(?![\w/-])")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (rf"(?:\d{{1,4}}[/.-]\d{{1,2}}[/.-]\d{{1,4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|"
         rf"\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}|(?:19|20)\d{{2}})")
DOB = re.compile(rf"\b(?:date of birth|d\.?o\.?b\.?|birth ?date|born(?: on| in)?)\s*[:=-]?\s*{_DATE}", re.IGNORECASE)
LABELLED_NAME = re.compile(r"\b(?:patient(?:'s)? name|full name|name|patient)\s*[:=]\s*([A-Z][a-z]+(?:\s+[A-Z][a-z'-]+)+)")
INTRO = re.compile(r"\b(?:[Mm]y name is|I am|I'm|[Hh]i|[Hh]ello|[Dd]ear|[Hh]ey),?\s+([A-Z][a-z]+)\b")
PAIR = re.compile(r"\b([A-Z][a-z]+)\s+([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b")


@lru_cache(maxsize=1)
def _names() -> tuple[frozenset, frozenset]:
    from faker.providers.person.en_US import Provider

    first = frozenset(Provider.first_names_male) | frozenset(Provider.first_names_female)
    return first, frozenset(Provider.last_names)


def mask(text: str) -> str:
    return f"{text[:1]}***({len(text)} chars)"


def find_pii(text: str) -> list[tuple[str, str]]:
    """(kind, match) for each piece of personal data found; kinds: email, phone, dob, name."""
    if not text:
        return []
    lower = text.lower()
    # cheap substring guards skip the scans that cannot match (the checker streams 100s of MB)
    found = [("email", m.group(0)) for m in EMAIL.finditer(text)] if "@" in text else []
    for run in _DIGIT_RUN.finditer(text):
        lo, hi = max(run.start() - 1, 0), min(run.end() + 1, len(text))  # keep the boundary characters
        found += [("phone", m.group(0)) for m in PHONE.finditer(text, lo, hi)]
    if "birth" in lower or "dob" in lower or "d.o.b" in lower or "born" in lower:
        found += [("dob", m.group(0)) for m in DOB.finditer(text)]
    first, last = _names()
    if "name" in lower or "patient" in lower:
        found += [("name", m.group(1)) for m in LABELLED_NAME.finditer(text)]
    if any(w in lower for w in ("my name", "i am", "i'm", "hello", "dear", "hey", "hi ", "hi,")):
        found += [("name", m.group(1)) for m in INTRO.finditer(text) if m.group(1) in first]
    found += [("name", m.group(0)) for m in PAIR.finditer(text) if m.group(1) in first and m.group(2) in last]
    return found
