//! The day-ahead gate-closure schedule (spec D24): which height clears which delivery
//! periods, and when each height's gate closes.
//!
//! A consortium with a schedule runs one auction per delivery day. Height `h` clears the
//! delivery day `first_delivery_day + (h - 1)` (a calendar day in the schedule's time zone):
//! every period of that day, from its local midnight to the next, in steps of the resolution,
//! so a day has 96 quarter-hours, or 92 and 100 on the days the clocks change. The gate of
//! height `h` closes at the gate time (local) on the day before its delivery day. A bid for a
//! period belongs to exactly one height, computed from the period alone, so every home node
//! puts every bid for a period in the same round, whenever the bid arrived.
//!
//! The arithmetic uses the IANA time-zone database compiled into this build (jiff's bundled
//! copy), never the host's, so every node computes the same instants; members run the same
//! release. A local gate time that falls in a clock change's gap or fold resolves as RFC 5545
//! says (jiff's "compatible" rule: a gap moves forward by its length, a fold takes the earlier
//! instant).

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::units::Timestamp;

/// Most heights ahead of the open one that a bid may be for (a bid rests at its home node
/// until its gate; this bounds how much a node holds).
pub const MAX_GATES_AHEAD: u64 = 14;

/// How far a member's clock may run ahead of another's (spec N4): a proposal for a height
/// arriving earlier than this before the height's gate, by the receiver's clock, is ignored,
/// so that no primary can close the others' gates early. Members keep their clocks
/// synchronised far closer (NTP).
pub const MAX_CLOCK_SKEW_MS: u64 = 2_000;

/// The resolutions a schedule may open, in minutes.
pub const RESOLUTIONS: [u16; 3] = [15, 30, 60];

const MINUTE_MS: i64 = 60_000;
const DAY_S: i64 = 86_400;

/// A daily gate-closure schedule, part of the genesis timing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GateSchedule {
    /// The IANA time zone the schedule is written in, e.g. `Europe/Brussels`.
    pub zone: String,
    /// The gate time on the day before delivery, in seconds after local midnight.
    pub gate_second: u32,
    /// The length of every delivery period the schedule opens, in minutes (15, 30 or 60).
    pub resolution_minutes: u16,
    /// The delivery day of height 1, in days since 1970-01-01.
    pub first_delivery_day: i32,
}
crate::canonical_struct!(GateSchedule {
    zone: str(64),
    gate_second,
    resolution_minutes,
    first_delivery_day,
});

/// Why a delivery period has no place in the schedule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum ScheduleError {
    /// The period's length is not the schedule's resolution.
    #[error("the schedule opens {resolution}-minute periods, not {minutes}-minute ones")]
    Resolution {
        /// The schedule's.
        resolution: u16,
        /// The bid's.
        minutes: u32,
    },
    /// The period does not start on the schedule's grid.
    #[error(
        "a period starts on the {resolution}-minute grid from local midnight; {start} does not"
    )]
    Grid {
        /// The schedule's resolution.
        resolution: u16,
        /// The bid's delivery start (ms since the epoch).
        start: u64,
    },
    /// The period is delivered before the chain's first delivery day.
    #[error("delivery day {day} is before the chain's first, {first}")]
    BeforeFirstDay {
        /// The period's delivery day.
        day: String,
        /// The first delivery day.
        first: String,
    },
    /// An instant outside the calendar's range.
    #[error("{0} ms is outside the calendar's range")]
    OutOfRange(u64),
}

/// A [`Timestamp`] as a calendar instant, if the calendar reaches it.
pub fn instant(t: Timestamp) -> Option<jiff::Timestamp> {
    i64::try_from(t.0)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
}

fn date_of_epoch_day(day: i64) -> Option<Date> {
    jiff::Timestamp::from_second(day * DAY_S)
        .ok()
        .map(|t| t.to_zoned(TimeZone::UTC).date())
}

fn epoch_day(date: Date) -> Option<i64> {
    date.to_zoned(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second().div_euclid(DAY_S))
}

fn millis(z: &jiff::Zoned) -> Option<u64> {
    u64::try_from(z.timestamp().as_millisecond()).ok()
}

impl GateSchedule {
    /// The schedule's time zone from the bundled database.
    pub fn time_zone(&self) -> Result<TimeZone, String> {
        TimeZone::get(&self.zone)
            .map_err(|_| format!("`{}` is not a time zone of the IANA database", self.zone))
    }

    /// Checks the fields (spec D6); the error says which is wrong and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.time_zone().map_err(|e| ("zone", e))?;
        if self.gate_second >= 24 * 3600 {
            return Err(("gate", "must be a time of day, before 24:00".into()));
        }
        if !RESOLUTIONS.contains(&self.resolution_minutes) {
            return Err((
                "resolution_minutes",
                format!("must be 15, 30 or 60, not {}", self.resolution_minutes),
            ));
        }
        // Far enough from the calendar's ends that every height a chain reaches stays in it.
        if !(0..=2_900_000).contains(&self.first_delivery_day) {
            return Err((
                "first_delivery_day",
                "must be between 1970-01-01 and 9900-01-01".into(),
            ));
        }
        Ok(())
    }

    /// The first delivery day as a calendar date.
    pub fn first_day(&self) -> Date {
        date_of_epoch_day(i64::from(self.first_delivery_day)).expect("validated")
    }

    /// The delivery day height `h` clears (heights start at 1).
    pub fn delivery_day(&self, height: u64) -> Date {
        let offset = i64::try_from(height.max(1) - 1).unwrap_or(i64::MAX / 2);
        date_of_epoch_day(i64::from(self.first_delivery_day).saturating_add(offset))
            .unwrap_or(Date::MAX)
    }

    /// When height `h`'s gate closes: the gate time on the day before its delivery day.
    pub fn gate_of(&self, height: u64) -> Timestamp {
        let tz = self.time_zone().expect("validated");
        let day = self.delivery_day(height);
        let (h, m, sec) = (
            self.gate_second / 3600,
            self.gate_second / 60 % 60,
            self.gate_second % 60,
        );
        let gate = day
            .yesterday()
            .ok()
            .and_then(|d| d.at(h as i8, m as i8, sec as i8, 0).to_zoned(tz).ok())
            .and_then(|z| millis(&z));
        Timestamp(gate.unwrap_or(u64::MAX))
    }

    /// The delivery periods height `h` clears: the start of each, in order.
    pub fn periods_of(&self, height: u64) -> Vec<Timestamp> {
        let (start, end) = self.day_bounds(self.delivery_day(height));
        let step = u64::from(self.resolution_minutes) * MINUTE_MS as u64;
        (start..end).step_by(step as usize).map(Timestamp).collect()
    }

    /// The first and last-plus-one instant of a local calendar day.
    fn day_bounds(&self, day: Date) -> (u64, u64) {
        let tz = self.time_zone().expect("validated");
        let at = |d: Option<Date>| {
            d.and_then(|d| d.to_zoned(tz.clone()).ok())
                .and_then(|z| millis(&z))
                .unwrap_or(u64::MAX)
        };
        (at(Some(day)), at(day.tomorrow().ok()))
    }

    /// The height that clears the period starting at `start` and lasting `minutes` (spec
    /// D24), or why no height does.
    pub fn height_of(&self, start: Timestamp, minutes: u32) -> Result<u64, ScheduleError> {
        if minutes != u32::from(self.resolution_minutes) {
            return Err(ScheduleError::Resolution {
                resolution: self.resolution_minutes,
                minutes,
            });
        }
        let tz = self.time_zone().expect("validated");
        let day = instant(start)
            .ok_or(ScheduleError::OutOfRange(start.0))?
            .to_zoned(tz)
            .date();
        let (day_start, _) = self.day_bounds(day);
        let step = u64::from(self.resolution_minutes) * MINUTE_MS as u64;
        if (start.0 - day_start) % step != 0 {
            return Err(ScheduleError::Grid {
                resolution: self.resolution_minutes,
                start: start.0,
            });
        }
        let index = epoch_day(day).ok_or(ScheduleError::OutOfRange(start.0))?
            - i64::from(self.first_delivery_day);
        if index < 0 {
            return Err(ScheduleError::BeforeFirstDay {
                day: day.to_string(),
                first: self.first_day().to_string(),
            });
        }
        Ok(index as u64 + 1)
    }

    /// The height whose gate is the first after `now`: where a new bid can still go.
    pub fn open_height(&self, now: Timestamp) -> u64 {
        let tz = self.time_zone().expect("validated");
        let Some(t) = instant(now) else {
            return u64::MAX;
        };
        // The delivery day after today's local date is the one whose gate is today; if that
        // gate has passed, the day after.
        let today = epoch_day(t.to_zoned(tz).date()).unwrap_or(i64::MAX / 2);
        let first = i64::from(self.first_delivery_day);
        let mut h = (today + 1 - first).max(0) as u64 + 1;
        while self.gate_of(h) <= now {
            h += 1;
        }
        h
    }

    /// A day as `YYYY-MM-DD` from the canonical day count.
    pub fn day_text(day: i32) -> String {
        date_of_epoch_day(i64::from(day)).map_or_else(|| format!("day {day}"), |d| d.to_string())
    }

    /// Parses `YYYY-MM-DD` into the canonical day count.
    pub fn parse_day(text: &str) -> Result<i32, String> {
        let date: Date = text
            .parse()
            .map_err(|_| format!("`{text}` is not a date YYYY-MM-DD"))?;
        epoch_day(date)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or_else(|| format!("`{text}` is out of range"))
    }

    /// Parses `HH:MM` or `HH:MM:SS` into seconds after midnight.
    pub fn parse_time(text: &str) -> Result<u32, String> {
        let bad = || format!("`{text}` is not a time of day HH:MM or HH:MM:SS");
        let parts: Vec<&str> = text.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let mut v = [0u32; 3];
        for (slot, p) in v.iter_mut().zip(&parts) {
            *slot = p.parse().map_err(|_| bad())?;
        }
        if v[0] >= 24 || v[1] >= 60 || v[2] >= 60 {
            return Err(bad());
        }
        Ok(v[0] * 3600 + v[1] * 60 + v[2])
    }

    /// Seconds after midnight as `HH:MM`, or `HH:MM:SS` when the seconds are not zero.
    pub fn time_text(second: u32) -> String {
        let (h, m, s) = (second / 3600, second / 60 % 60, second % 60);
        if s == 0 {
            format!("{h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}:{s:02}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The European day-ahead market since 1 October 2025: gate 12:00 Brussels time, 96
    /// quarter-hours.
    fn sdac(first: &str) -> GateSchedule {
        let s = GateSchedule {
            zone: "Europe/Brussels".into(),
            gate_second: 12 * 3600,
            resolution_minutes: 15,
            first_delivery_day: GateSchedule::parse_day(first).unwrap(),
        };
        s.validate().unwrap();
        s
    }

    fn utc(text: &str) -> Timestamp {
        let t: jiff::Timestamp = text.parse().unwrap();
        Timestamp(t.as_millisecond() as u64)
    }

    #[test]
    fn a_day_has_96_quarter_hours_and_92_or_100_when_the_clocks_change() {
        let s = sdac("2026-01-01");
        let height = |day: &str| {
            let first = s.first_delivery_day;
            (GateSchedule::parse_day(day).unwrap() - first) as u64 + 1
        };
        // 2026: clocks go forward on 29 March, back on 25 October (EU rule, last Sundays).
        for (day, count) in [
            ("2026-03-28", 96),
            ("2026-03-29", 92),
            ("2026-03-30", 96),
            ("2026-10-24", 96),
            ("2026-10-25", 100),
            ("2026-10-26", 96),
        ] {
            let periods = s.periods_of(height(day));
            assert_eq!(periods.len(), count, "{day}");
            for p in &periods {
                assert_eq!(s.height_of(*p, 15), Ok(height(day)), "{day} {p}");
            }
        }
        // Winter: the delivery day starts at 23:00 UTC the evening before; summer at 22:00.
        assert_eq!(
            s.periods_of(height("2026-01-15"))[0],
            utc("2026-01-14T23:00:00Z")
        );
        assert_eq!(
            s.periods_of(height("2026-07-15"))[0],
            utc("2026-07-14T22:00:00Z")
        );
        assert_eq!(
            s.periods_of(height("2026-10-25"))[0],
            utc("2026-10-24T22:00:00Z")
        );
        assert_eq!(
            *s.periods_of(height("2026-10-25")).last().unwrap(),
            utc("2026-10-25T22:45:00Z")
        );
        // Hourly: 23 and 25 periods on the change days.
        let hourly = GateSchedule {
            resolution_minutes: 60,
            ..s.clone()
        };
        assert_eq!(hourly.periods_of(height("2026-03-29")).len(), 23);
        assert_eq!(hourly.periods_of(height("2026-10-25")).len(), 25);
        assert_eq!(hourly.periods_of(height("2026-06-01")).len(), 24);
    }

    #[test]
    fn the_gate_closes_at_noon_brussels_time_the_day_before() {
        let s = sdac("2026-01-01");
        assert_eq!(s.gate_of(1), utc("2025-12-31T11:00:00Z"));
        // The gate for 30 March is on 29 March, already summer time: 10:00 UTC.
        let h = (GateSchedule::parse_day("2026-03-30").unwrap() - s.first_delivery_day) as u64 + 1;
        assert_eq!(s.gate_of(h), utc("2026-03-29T10:00:00Z"));
        assert_eq!(s.gate_of(h - 1), utc("2026-03-28T11:00:00Z"));
        // Around the autumn change.
        let h = (GateSchedule::parse_day("2026-10-26").unwrap() - s.first_delivery_day) as u64 + 1;
        assert_eq!(s.gate_of(h), utc("2026-10-25T11:00:00Z"));
        assert_eq!(s.gate_of(h - 1), utc("2026-10-24T10:00:00Z"));
    }

    #[test]
    fn a_gate_in_a_clock_change_gap_or_fold_resolves_compatibly() {
        // 02:30 does not exist on 29 March in Brussels and happens twice on 25 October.
        let s = GateSchedule {
            gate_second: 2 * 3600 + 30 * 60,
            ..sdac("2026-03-30")
        };
        assert_eq!(s.gate_of(1), utc("2026-03-29T01:30:00Z"));
        let s = GateSchedule {
            gate_second: 2 * 3600 + 30 * 60,
            ..sdac("2026-10-26")
        };
        assert_eq!(s.gate_of(1), utc("2026-10-25T00:30:00Z"));
    }

    #[test]
    fn the_open_height_is_the_first_whose_gate_is_ahead() {
        let s = sdac("2026-12-01");
        // Before noon on 7 December the open auction delivers on 8 December.
        let h8 = (GateSchedule::parse_day("2026-12-08").unwrap() - s.first_delivery_day) as u64 + 1;
        assert_eq!(s.open_height(utc("2026-12-07T10:59:59Z")), h8);
        assert_eq!(s.open_height(utc("2026-12-07T11:00:00Z")), h8 + 1);
        // Before the chain's first gate, height 1.
        assert_eq!(s.open_height(utc("2026-11-01T00:00:00Z")), 1);
    }

    #[test]
    fn periods_off_the_schedule_are_refused_with_the_reason() {
        let s = sdac("2026-12-01");
        let start = utc("2026-12-08T10:00:00Z");
        assert!(s.height_of(start, 15).is_ok());
        assert_eq!(
            s.height_of(start, 60),
            Err(ScheduleError::Resolution {
                resolution: 15,
                minutes: 60
            })
        );
        assert!(matches!(
            s.height_of(Timestamp(start.0 + 60_000), 15),
            Err(ScheduleError::Grid { .. })
        ));
        assert_eq!(
            s.height_of(utc("2026-11-30T12:00:00Z"), 15)
                .unwrap_err()
                .to_string(),
            "delivery day 2026-11-30 is before the chain's first, 2026-12-01"
        );
        // A zone with a half-hour offset: the grid counts from local midnight.
        let india = GateSchedule {
            zone: "Asia/Kolkata".into(),
            ..s.clone()
        };
        assert!(india.height_of(utc("2026-12-07T18:30:00Z"), 15).is_ok());
        assert!(india.height_of(utc("2026-12-07T18:00:00Z"), 15).is_ok());
        assert_eq!(india.periods_of(3).len(), 96);
    }

    #[test]
    fn bad_fields_are_named() {
        let s = sdac("2026-12-01");
        let bad = |s: GateSchedule| s.validate().unwrap_err().0;
        assert_eq!(
            bad(GateSchedule {
                zone: "Europe/Atlantis".into(),
                ..s.clone()
            }),
            "zone"
        );
        assert_eq!(
            bad(GateSchedule {
                resolution_minutes: 20,
                ..s.clone()
            }),
            "resolution_minutes"
        );
        assert_eq!(
            bad(GateSchedule {
                gate_second: 86_400,
                ..s.clone()
            }),
            "gate"
        );
        assert_eq!(GateSchedule::parse_time("12:00"), Ok(43_200));
        assert_eq!(GateSchedule::parse_time("12:00:07"), Ok(43_207));
        assert_eq!(GateSchedule::time_text(43_207), "12:00:07");
        assert_eq!(GateSchedule::time_text(43_200), "12:00");
        assert!(GateSchedule::parse_time("24:00").is_err());
        assert!(GateSchedule::parse_time("12:0").is_err());
        assert!(GateSchedule::parse_time("12:00:60").is_err());
        assert_eq!(GateSchedule::day_text(s.first_delivery_day), "2026-12-01");
    }
}
