//! R16: the municipal calendar that "outside office hours" is measured against: Saturdays,
//! Sundays, the national holidays (国民の祝日に関する法律) computed by rule, the municipal year-end
//! and New Year closure (12/29–1/3, 地方自治法 第4条の2 and each municipality's 休日条例), and the
//! extra closed dates an organisation configures.
//!
//! The rules are the law as it stands since 2020 (天皇誕生日 on 2/23). The one-off shifts of
//! 2020 and 2021 (the Olympic games) are listed explicitly; earlier years are computed with the
//! current rules, which a report of a past year before 2020 should keep in mind.

use time::{Date, Month, Weekday};

/// Whether `date` is a national holiday (祝日, 振替休日 or 国民の休日).
pub fn is_national_holiday(date: Date) -> bool {
    holiday_name(date).is_some()
}

/// The name of the national holiday on `date`, if it is one.
pub fn holiday_name(date: Date) -> Option<&'static str> {
    if let Some(name) = statutory(date) {
        return Some(name);
    }
    // 国民の休日 (祝日法 第3条3項): a weekday squeezed between two statutory holidays.
    let (before, after) = (date.previous_day()?, date.next_day()?);
    if date.weekday() != Weekday::Sunday && statutory(before).is_some() && statutory(after).is_some() {
        return Some("国民の休日");
    }
    // 振替休日 (第3条2項): a statutory holiday on a Sunday moves its rest to the nearest
    // following day that is not itself a statutory holiday.
    let mut day = date.previous_day()?;
    while statutory(day).is_some() {
        if day.weekday() == Weekday::Sunday {
            return Some("振替休日");
        }
        day = day.previous_day()?;
    }
    None
}

/// Whether the municipality is closed on `date`: a weekend, a national holiday, the year-end
/// closure, or one of `extra` (configured closed dates).
pub fn is_closed(date: Date, extra: &[Date]) -> bool {
    matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
        || is_year_end_closure(date)
        || is_national_holiday(date)
        || extra.contains(&date)
}

/// 12月29日から翌年1月3日まで (the municipal year-end and New Year closure).
pub fn is_year_end_closure(date: Date) -> bool {
    match date.month() {
        Month::December => date.day() >= 29,
        Month::January => date.day() <= 3,
        _ => false,
    }
}

/// The holidays the law names for a date (国民の祝日), without substitutes.
fn statutory(date: Date) -> Option<&'static str> {
    let year = date.year();
    let (month, day) = (date.month(), date.day());
    if let Some(name) = olympic_years(year, month, day) {
        return name;
    }
    let fixed = match (month, day) {
        (Month::January, 1) => Some("元日"),
        (Month::February, 11) => Some("建国記念の日"),
        (Month::February, 23) if year >= 2020 => Some("天皇誕生日"),
        (Month::April, 29) => Some("昭和の日"),
        (Month::May, 3) => Some("憲法記念日"),
        (Month::May, 4) => Some("みどりの日"),
        (Month::May, 5) => Some("こどもの日"),
        (Month::August, 11) => Some("山の日"),
        (Month::November, 3) => Some("文化の日"),
        (Month::November, 23) => Some("勤労感謝の日"),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    // Happy Monday (ハッピーマンデー制度): the n-th Monday of the month.
    let monday = date.weekday() == Weekday::Monday;
    let nth = (day - 1) / 7 + 1;
    match (month, nth) {
        (Month::January, 2) if monday => return Some("成人の日"),
        (Month::July, 3) if monday => return Some("海の日"),
        (Month::September, 3) if monday => return Some("敬老の日"),
        (Month::October, 2) if monday => return Some("スポーツの日"),
        _ => {}
    }
    match month {
        Month::March if day == vernal_equinox_day(year) => Some("春分の日"),
        Month::September if day == autumnal_equinox_day(year) => Some("秋分の日"),
        _ => None,
    }
}

/// 2020 and 2021 moved 海の日, スポーツの日 and 山の日 for the Olympic games: on those dates
/// the answer is given here (`Some(None)` where the usual rule would wrongly find a holiday).
fn olympic_years(year: i32, month: Month, day: u8) -> Option<Option<&'static str>> {
    let moved: &[(Month, u8, &str)] = match year {
        2020 => &[(Month::July, 23, "海の日"), (Month::July, 24, "スポーツの日"), (Month::August, 10, "山の日")],
        2021 => &[(Month::July, 22, "海の日"), (Month::July, 23, "スポーツの日"), (Month::August, 8, "山の日")],
        _ => return None,
    };
    if let Some((_, _, name)) = moved.iter().find(|(m, d, _)| *m == month && *d == day) {
        return Some(Some(name));
    }
    // The usual dates are ordinary days in those years.
    let usual = matches!((month, day), (Month::August, 11))
        || (month == Month::July && (15..=21).contains(&day))
        || (month == Month::October && (8..=14).contains(&day));
    usual.then_some(None)
}

/// 春分日 by the formula the National Astronomical Observatory's almanac follows (valid
/// 1980–2099): floor(20.8431 + 0.242194 (y − 1980) − floor((y − 1980) / 4)).
fn vernal_equinox_day(year: i32) -> u8 {
    equinox(20.8431, year)
}

/// 秋分日: floor(23.2488 + 0.242194 (y − 1980) − floor((y − 1980) / 4)).
fn autumnal_equinox_day(year: i32) -> u8 {
    equinox(23.2488, year)
}

fn equinox(base: f64, year: i32) -> u8 {
    let years = f64::from(year - 1980);
    let day = base + 0.242_194 * years - (years / 4.0).floor();
    // Always 19 to 24 inside the formula's range; clamped so a far year cannot overflow.
    day.floor().clamp(1.0, 31.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_2026_holidays_are_the_cabinet_office_list() {
        let holidays: Vec<Date> = (0..365)
            .filter_map(|n| date!(2026 - 01 - 01).checked_add(time::Duration::days(n)))
            .filter(|d| is_national_holiday(*d))
            .collect();
        assert_eq!(
            holidays,
            vec![
                date!(2026 - 01 - 01),
                date!(2026 - 01 - 12),
                date!(2026 - 02 - 11),
                date!(2026 - 02 - 23),
                date!(2026 - 03 - 20),
                date!(2026 - 04 - 29),
                date!(2026 - 05 - 03),
                date!(2026 - 05 - 04),
                date!(2026 - 05 - 05),
                date!(2026 - 05 - 06),
                date!(2026 - 07 - 20),
                date!(2026 - 08 - 11),
                date!(2026 - 09 - 21),
                date!(2026 - 09 - 22),
                date!(2026 - 09 - 23),
                date!(2026 - 10 - 12),
                date!(2026 - 11 - 03),
                date!(2026 - 11 - 23),
            ]
        );
        assert_eq!(holiday_name(date!(2026 - 05 - 06)), Some("振替休日"));
        assert_eq!(holiday_name(date!(2026 - 09 - 21)), Some("敬老の日"));
        assert_eq!(holiday_name(date!(2026 - 09 - 22)), Some("国民の休日"));
        assert_eq!(holiday_name(date!(2026 - 09 - 23)), Some("秋分の日"));
    }

    #[test]
    fn the_2025_holidays_are_the_cabinet_office_list() {
        let holidays: Vec<Date> = (0..365)
            .filter_map(|n| date!(2025 - 01 - 01).checked_add(time::Duration::days(n)))
            .filter(|d| is_national_holiday(*d))
            .collect();
        assert_eq!(
            holidays,
            vec![
                date!(2025 - 01 - 01),
                date!(2025 - 01 - 13),
                date!(2025 - 02 - 11),
                date!(2025 - 02 - 23),
                date!(2025 - 02 - 24),
                date!(2025 - 03 - 20),
                date!(2025 - 04 - 29),
                date!(2025 - 05 - 03),
                date!(2025 - 05 - 04),
                date!(2025 - 05 - 05),
                date!(2025 - 05 - 06),
                date!(2025 - 07 - 21),
                date!(2025 - 08 - 11),
                date!(2025 - 09 - 15),
                date!(2025 - 09 - 23),
                date!(2025 - 10 - 13),
                date!(2025 - 11 - 03),
                date!(2025 - 11 - 23),
                date!(2025 - 11 - 24),
            ]
        );
        assert_eq!(holiday_name(date!(2025 - 11 - 24)), Some("振替休日"));
    }

    #[test]
    fn equinoxes_follow_the_formula() {
        assert_eq!(vernal_equinox_day(2024), 20);
        assert_eq!(autumnal_equinox_day(2024), 22);
        assert_eq!(vernal_equinox_day(2027), 21);
        assert_eq!(autumnal_equinox_day(2027), 23);
    }

    #[test]
    fn the_olympic_years_moved_three_holidays() {
        assert!(is_national_holiday(date!(2021 - 07 - 22)));
        assert!(is_national_holiday(date!(2021 - 07 - 23)));
        assert!(is_national_holiday(date!(2021 - 08 - 09)), "振替休日 for 山の日 on Sunday 8/8");
        assert!(!is_national_holiday(date!(2021 - 07 - 19)), "the usual 海の日 was a working day");
        assert!(!is_national_holiday(date!(2021 - 10 - 11)), "the usual スポーツの日 was a working day");
    }

    #[test]
    fn the_municipality_closes_at_weekends_holidays_year_end_and_configured_days() {
        let extra = [date!(2026 - 06 - 15)];
        assert!(is_closed(date!(2026 - 12 - 29), &extra), "year-end closure");
        assert!(is_closed(date!(2027 - 01 - 03), &extra), "year-end closure");
        assert!(!is_closed(date!(2027 - 01 - 04), &extra), "first working day (Monday)");
        assert!(is_closed(date!(2026 - 12 - 05), &extra), "Saturday");
        assert!(is_closed(date!(2026 - 06 - 15), &extra), "configured");
        assert!(!is_closed(date!(2026 - 06 - 16), &extra), "an ordinary Tuesday");
        assert!(is_closed(date!(2026 - 09 - 22), &extra), "国民の休日");
    }
}
