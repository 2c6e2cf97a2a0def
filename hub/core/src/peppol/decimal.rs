//! Exact decimal numbers for amounts, prices, quantities and percentages: PEPPOL's
//! arithmetic (EN 16931) is decimal, so never a float.

use super::*;

/// Decimal places a [`Decimal`] holds.
const SCALE: u32 = 9;
/// `10^SCALE`.
const ONE: i128 = 1_000_000_000;
/// Most integer digits a document's number may have.
const MAX_INTEGER_DIGITS: usize = 18;

/// An exact decimal number with 9 decimal places (a fixed-point `i128` in units of 10⁻⁹),
/// for amounts, prices, quantities and percentages. Never a float.
///
/// Read numbers have at most 18 integer digits and 9 significant decimals (more decimals
/// than 9 are refused unless they are zeros), so sums of any number of lines a document
/// can hold stay far from the `i128` limit; `+` and `-` saturate rather than wrap in the
/// impossible case. Equality is numeric: `1300` equals `1300.00`. `Display` (and `Debug`)
/// print the shortest exact form; serialized as that string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(i128);

impl Decimal {
    pub const ZERO: Decimal = Decimal(0);

    /// A whole number.
    pub fn from_int(n: i64) -> Decimal {
        Decimal(i128::from(n) * ONE)
    }

    /// `mantissa × 10^-scale`, e.g. `Decimal::new(165625, 2)` is 1656.25; `None` for a scale
    /// above 9.
    pub fn new(mantissa: i64, scale: u32) -> Option<Decimal> {
        let factor = 10i128.checked_pow(SCALE.checked_sub(scale)?)?;
        Some(Decimal(i128::from(mantissa) * factor))
    }

    /// Parses an `xsd:decimal` (`-12`, `+1.50`, `.5`; surrounding whitespace trimmed, no
    /// exponent). `None` if it is not one, or is outside the range described on the type.
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        if int.len() > MAX_INTEGER_DIGITS || frac.len() > SCALE as usize {
            return None;
        }
        let mut units: i128 = 0;
        for b in int.bytes() {
            units = units * 10 + i128::from(b - b'0');
        }
        units *= ONE;
        let mut place = ONE;
        for b in frac.bytes() {
            place /= 10;
            units += i128::from(b - b'0') * place;
        }
        Some(Decimal(if negative { -units } else { units }))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn abs(self) -> Decimal {
        Decimal(self.0.saturating_abs())
    }

    /// Whether the number has no fractional part.
    pub fn is_integer(self) -> bool {
        self.0 % ONE == 0
    }

    /// The number rounded to a whole number (halves away from zero), if it fits an `i64`.
    pub fn round_to_i64(self) -> Option<i64> {
        i64::try_from(div_round(self.0, ONE)?).ok()
    }

    /// Rounded to `places` decimals (at most 9), halves away from zero, as in EN 16931.
    pub fn round_dp(self, places: u32) -> Decimal {
        let Some(step) = 10i128.checked_pow(SCALE.saturating_sub(places)) else { return self };
        match div_round(self.0, step) {
            Some(q) => Decimal(q.saturating_mul(step)),
            None => self,
        }
    }

    /// `self × n`, saturating.
    pub fn mul_int(self, n: i64) -> Decimal {
        Decimal(self.0.saturating_mul(i128::from(n)))
    }

    /// `self × factor ÷ divisor` rounded to `places` decimals (halves away from zero),
    /// computed exactly before the one rounding. `None` for a zero divisor or if an
    /// intermediate product overflows.
    pub fn mul_div_round(self, factor: Decimal, divisor: Decimal, places: u32) -> Option<Decimal> {
        let places = places.min(SCALE);
        // (a/1e9 × b/1e9) ÷ (c/1e9) × 10^places = a·b·10^places ÷ (c·1e9)
        let numerator = self.0.checked_mul(factor.0)?.checked_mul(10i128.pow(places))?;
        let denominator = divisor.0.checked_mul(ONE)?;
        let rounded = div_round(numerator, denominator)?;
        Some(Decimal(rounded.checked_mul(10i128.pow(SCALE - places))?))
    }
}

/// `n ÷ d` rounded to the nearest integer, halves away from zero; `None` for `d == 0`.
fn div_round(n: i128, d: i128) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let q = n.checked_div(d)?;
    let r = (n % d).unsigned_abs();
    let d_abs = d.unsigned_abs();
    if r >= d_abs - r {
        let away = if (n < 0) == (d < 0) { 1 } else { -1 };
        Some(q + away)
    } else {
        Some(q)
    }
}

impl FromStr for Decimal {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s).ok_or_else(|| ValidationError::new(ErrorCode::InvalidValue, "not a decimal number"))
    }
}

impl Add for Decimal {
    type Output = Decimal;
    fn add(self, rhs: Decimal) -> Decimal {
        Decimal(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Decimal {
    type Output = Decimal;
    fn sub(self, rhs: Decimal) -> Decimal {
        Decimal(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for Decimal {
    type Output = Decimal;
    fn neg(self) -> Decimal {
        Decimal(self.0.saturating_neg())
    }
}

impl Sum for Decimal {
    fn sum<I: Iterator<Item = Decimal>>(iter: I) -> Decimal {
        iter.fold(Decimal::ZERO, Add::add)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let one = ONE.unsigned_abs();
        let (int, frac) = (abs / one, abs % one);
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = format!("{frac:09}");
        write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
