"""Identifiers of the synthetic fleet: IMEIs, SIM ICCIDs and numbers, French plates.

Uniqueness comes from construction, not from retrying: each serial field is an affine bijection
of the device index (multiplier coprime with the size of the field), scrambled so neighbouring
devices do not get neighbouring numbers, yet device i gets the same identifiers whatever the size
of the fleet.
"""

from __future__ import annotations

import math

import numpy as np

from . import rng

# 8-digit Type Allocation Codes per model. JC400P, X3 and FMB920 come from IMEIs in the vendors'
# own samples (Jimi push examples, Teltonika FOTA docs); the others follow the same allocation
# ranges (35... GSMA-issued, 86... Chinese-issued module TACs).
TAC_BY_MODEL = {
    "JC400P": "86812024",
    "GT06E": "35840409",
    "X3": "86924706",
    "VL103M": "86802104",
    "FMB920": "35262569",
    "FMC130": "35209308",
    "FMB140": "35656411",
    "AOVX-M1": "86441805",
    "AOVX-C2": "86590304",
}

# French SIV plates: letters exclude I, O and U.
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"
_PLATE_SPACE = 23 * 23 * 999 * 23 * 23


def luhn_check_digits(bodies: np.ndarray) -> np.ndarray:
    """Luhn check digit for each row of a (n, k) array of digits (the body without check digit)."""
    bodies = np.asarray(bodies, dtype=np.int64)
    k = bodies.shape[1]
    # Doubling starts from the rightmost body digit (it sits next to the check digit).
    doubled = (np.arange(k)[::-1] % 2) == 0
    d = np.where(doubled, bodies * 2, bodies)
    d = np.where(d > 9, d - 9, d)
    return (10 - d.sum(axis=1) % 10) % 10


def luhn_valid(number: str) -> bool:
    """True if the digit string passes the Luhn check."""
    if not number.isdigit():
        return False
    total = 0
    for pos, ch in enumerate(reversed(number)):
        d = int(ch)
        if pos % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def scrambled(seed: int, tag: str, indices: np.ndarray, modulus: int) -> np.ndarray:
    """An affine bijection index -> [0, modulus): distinct indices below modulus never collide."""
    mult = 1 + 2 * int(rng.key(seed, tag, "mult") % (modulus // 2))
    while math.gcd(mult, modulus) != 1:
        mult += 2
    offset = int(rng.key(seed, tag, "offset") % modulus)
    idx = np.asarray(indices, dtype=object)
    return np.array([(mult * int(i) + offset) % modulus for i in idx], dtype=np.int64)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) digit array of non-negative integers, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (np.asarray(values, dtype=np.int64)[:, None] // powers) % 10


def _with_check_digit(prefix_digits: np.ndarray) -> list[str]:
    check = luhn_check_digits(prefix_digits)
    full = np.concatenate([prefix_digits, check[:, None]], axis=1)
    chars = (full + ord("0")).astype(np.uint8)
    return [row.tobytes().decode("ascii") for row in chars]


def imeis(seed: int, indices: np.ndarray, models: list[str]) -> list[str]:
    """15-digit IMEIs: TAC of the model + 6-digit serial unique per index + Luhn digit."""
    serials = scrambled(seed, "imei-serial", indices, 1_000_000)
    tacs = np.array([int(TAC_BY_MODEL[m]) for m in models], dtype=np.int64)
    return _with_check_digit(np.concatenate([_digits(tacs, 8), _digits(serials, 6)], axis=1))


def iccids(seed: int, indices: np.ndarray) -> list[str]:
    """19-digit ICCIDs: 89 (telecom) 33 (France) + issuer + 12-digit account + Luhn digit."""
    issuers = np.array([1, 10, 20])[(rng.uniform(seed, "iccid-issuer", indices) * 3).astype(int)]
    accounts = scrambled(seed, "iccid-account", indices, 10**12)
    prefix = np.concatenate(
        [
            np.tile(np.array([8, 9, 3, 3]), (len(accounts), 1)),
            _digits(issuers, 2),
            _digits(accounts, 12),
        ],
        axis=1,
    )
    return _with_check_digit(prefix)


def msisdns(seed: int, indices: np.ndarray) -> list[str]:
    """French mobile numbers "+336xxxxxxxx" / "+337xxxxxxxx", unique per index."""
    numbers = scrambled(seed, "msisdn", indices, 2 * 10**8)
    return [f"+33{6 + n // 10**8}{n % 10**8:08d}" for n in numbers.tolist()]


def plates(seed: int, indices: np.ndarray) -> list[str]:
    """French SIV plates "AB-123-CD", unique per index."""
    out = []
    for n in scrambled(seed, "plate", indices, _PLATE_SPACE).tolist():
        n, l4 = divmod(n, 23)
        n, l3 = divmod(n, 23)
        n, num = divmod(n, 999)
        l1, l2 = divmod(n, 23)
        out.append(
            f"{PLATE_LETTERS[l1]}{PLATE_LETTERS[l2]}-{num + 1:03d}-{PLATE_LETTERS[l3]}{PLATE_LETTERS[l4]}"
        )
    return out
