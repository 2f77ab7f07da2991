//! Exact money arithmetic. Balances are held as integers of an asset's smallest unit (the mantissa
//! of a `Decimal` at the asset's scale), so adding never rounds. Every value stays within the 96-bit
//! mantissa of `rust_decimal`, which is what "fits the balance type" means: converting back to a
//! `Decimal` at the asset's scale is then always exact.

use rust_decimal::Decimal;

use crate::values::Scale;

/// The largest magnitude of a balance or amount, in smallest units: 2^96 − 1.
pub const MAX_UNITS: i128 = 79_228_162_514_264_337_593_543_950_335;

/// Why a decimal cannot become smallest units of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitsError {
    /// More decimal places than the asset's scale.
    Precision,
    /// Beyond `MAX_UNITS` at the asset's scale.
    Overflow,
}

/// Converts a decimal to smallest units at `scale`, refusing rather than rounding.
pub fn to_units(value: Decimal, scale: Scale) -> Result<i128, UnitsError> {
    let normalized = value.normalize();
    if normalized.scale() > scale.get() {
        return Err(UnitsError::Precision);
    }
    let factor = pow10(scale.get() - normalized.scale()).ok_or(UnitsError::Overflow)?;
    let units = normalized
        .mantissa()
        .checked_mul(factor)
        .ok_or(UnitsError::Overflow)?;
    if units.abs() > MAX_UNITS {
        return Err(UnitsError::Overflow);
    }
    Ok(units)
}

/// Converts smallest units back to a decimal with exactly `scale` places (`1000` at 2 → `10.00`).
pub fn to_decimal(units: i128, scale: Scale) -> Decimal {
    debug_assert!(units.abs() <= MAX_UNITS, "units beyond the balance type");
    Decimal::from_i128_with_scale(units, scale.get())
}

/// Adds within the balance type's bounds.
pub fn checked_add(a: i128, b: i128) -> Option<i128> {
    a.checked_add(b).filter(|sum| sum.abs() <= MAX_UNITS)
}

/// Subtracts within the balance type's bounds.
pub fn checked_sub(a: i128, b: i128) -> Option<i128> {
    a.checked_sub(b).filter(|diff| diff.abs() <= MAX_UNITS)
}

pub fn pow10(exponent: u32) -> Option<i128> {
    10i128.checked_pow(exponent)
}

/// `quantity × price` expressed exactly in smallest units at `result_scale`, or why it cannot be.
/// `quantity_units` are smallest units at `quantity_scale`; `price` is any positive decimal.
pub fn exact_product(
    quantity_units: i128,
    quantity_scale: Scale,
    price: Decimal,
    result_scale: Scale,
) -> Result<i128, UnitsError> {
    let price = price.normalize();
    let product = quantity_units
        .checked_mul(price.mantissa())
        .ok_or(UnitsError::Overflow)?;
    let product_scale = quantity_scale.get() + price.scale();
    let units = if product_scale <= result_scale.get() {
        let factor = pow10(result_scale.get() - product_scale).ok_or(UnitsError::Overflow)?;
        product.checked_mul(factor).ok_or(UnitsError::Overflow)?
    } else {
        let divisor = pow10(product_scale - result_scale.get()).ok_or(UnitsError::Overflow)?;
        if product % divisor != 0 {
            return Err(UnitsError::Precision);
        }
        product / divisor
    };
    if units.abs() > MAX_UNITS {
        return Err(UnitsError::Overflow);
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn scale(s: u32) -> Scale {
        Scale::try_from(s).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn units_round_trip_without_rounding() {
        assert_eq!(to_units(dec("10.5"), scale(2)), Ok(1050));
        assert_eq!(to_units(dec("10.50"), scale(2)), Ok(1050));
        assert_eq!(to_units(dec("10.500"), scale(2)), Ok(1050));
        assert_eq!(
            to_units(dec("10.505"), scale(2)),
            Err(UnitsError::Precision)
        );
        assert_eq!(to_decimal(1050, scale(2)).to_string(), "10.50");
        assert_eq!(to_decimal(7, scale(0)).to_string(), "7");
    }

    #[test]
    fn units_stay_within_the_mantissa() {
        // 80 billion with 18 places needs more than 96 bits.
        assert_eq!(
            to_units(dec("80000000000"), scale(18)),
            Err(UnitsError::Overflow)
        );
        assert!(to_units(dec("79228162514"), scale(18)).is_ok());
        assert_eq!(checked_add(MAX_UNITS, 1), None);
        assert_eq!(checked_sub(-MAX_UNITS, 1), None);
        assert_eq!(checked_add(MAX_UNITS, -1), Some(MAX_UNITS - 1));
    }

    #[test]
    fn exact_products() {
        // 10 shares (scale 0) at 189.50 into USD (scale 2) = 1895.00
        assert_eq!(
            exact_product(10, scale(0), dec("189.50"), scale(2)),
            Ok(189_500)
        );
        // 0.5 BTC (scale 8) at 30000.01 USD = 15000.005 → not exact at 2 places
        assert_eq!(
            exact_product(50_000_000, scale(8), dec("30000.01"), scale(2)),
            Err(UnitsError::Precision)
        );
        // 0.5 BTC at 30000.02 = 15000.01
        assert_eq!(
            exact_product(50_000_000, scale(8), dec("30000.02"), scale(2)),
            Ok(1_500_001)
        );
        assert_eq!(
            exact_product(MAX_UNITS, scale(0), dec("2"), scale(0)),
            Err(UnitsError::Overflow)
        );
    }
}
