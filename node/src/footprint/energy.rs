//! Energy of an execution. Where the machine exposes RAPL counters
//! (`/sys/class/powercap/intel-rapl:*`, readable by the node), the package
//! energy is measured and shared out by CPU time: every second at most, the
//! meter divides the energy the packages used by the CPU time all cores were
//! busy, and a call is charged its own CPU time at that rate (idle power
//! included, as the thesis's wall-socket meter did). Elsewhere — virtual
//! machines, most containers, ARM boards — energy is CPU time times a
//! configured power per busy core, and labelled `estimated`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Watts drawn per busy core when nothing is measured: a 65–125 W desktop or
/// server package spread over 8–12 cores. Set `--watts-per-core` for your
/// machine (a Raspberry Pi 4 core is nearer 1.5 W).
pub const DEFAULT_WATTS_PER_CORE: f64 = 10.0;

/// How often the measured rate is recomputed, and the least busy CPU time a
/// recomputation needs to be meaningful.
const CALIBRATE_EVERY: Duration = Duration::from_secs(1);
const MIN_BUSY_SECONDS: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergySource {
    /// RAPL package energy, attributed by CPU time.
    Measured,
    /// CPU time times the configured watts per core.
    Estimated,
}

impl EnergySource {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergySource::Measured => "measured",
            EnergySource::Estimated => "estimated",
        }
    }
}

/// What the meter currently charges, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyModel {
    pub source: EnergySource,
    pub watts_per_core: f64,
}

pub struct EnergyMeter {
    configured_watts_per_core: f64,
    rapl: Option<Mutex<Rapl>>,
}

impl EnergyMeter {
    pub fn new(watts_per_core: f64) -> Self {
        Self::with_sources(watts_per_core, Path::new("/sys/class/powercap"), Path::new("/proc/stat"), CALIBRATE_EVERY)
    }

    fn with_sources(watts_per_core: f64, powercap: &Path, proc_stat: &Path, every: Duration) -> Self {
        let rapl = Rapl::open(powercap, proc_stat, every).map(Mutex::new);
        Self { configured_watts_per_core: watts_per_core, rapl }
    }

    /// Energy in microwatt-hours of `cpu` time on one core.
    pub fn energy_uwh(&self, cpu: Duration) -> (f64, EnergySource) {
        let model = self.current();
        (cpu.as_secs_f64() * model.watts_per_core / 3600.0 * 1e6, model.source)
    }

    pub fn model(&self) -> EnergyModel {
        self.current()
    }

    fn current(&self) -> EnergyModel {
        let measured = self.rapl.as_ref().and_then(|rapl| rapl.lock().expect("rapl lock").watts_per_core());
        match measured {
            Some(watts_per_core) => EnergyModel { source: EnergySource::Measured, watts_per_core },
            None => EnergyModel { source: EnergySource::Estimated, watts_per_core: self.configured_watts_per_core },
        }
    }
}

struct Rapl {
    /// `energy_uj` of each package zone, with its wrap-around range.
    zones: Vec<(PathBuf, u64)>,
    proc_stat: PathBuf,
    every: Duration,
    last: Option<Sample>,
    watts_per_core: Option<f64>,
}

struct Sample {
    at: Instant,
    energy_uj: Vec<u64>,
    busy_seconds: f64,
}

impl Rapl {
    /// The package zones (`intel-rapl:N`, also used for AMD), if any is readable.
    fn open(powercap: &Path, proc_stat: &Path, every: Duration) -> Option<Rapl> {
        let mut zones: Vec<(PathBuf, u64)> = std::fs::read_dir(powercap)
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|zone| {
                let name = zone.file_name().and_then(|name| name.to_str()).unwrap_or_default();
                name.strip_prefix("intel-rapl:").is_some_and(|rest| !rest.contains(':'))
            })
            .filter(|zone| read_u64(&zone.join("energy_uj")).is_some())
            .map(|zone| {
                let range = read_u64(&zone.join("max_energy_range_uj")).unwrap_or(u64::MAX);
                (zone.join("energy_uj"), range)
            })
            .collect();
        zones.sort();
        busy_seconds(proc_stat)?;
        (!zones.is_empty()).then(|| Rapl {
            zones,
            proc_stat: proc_stat.to_owned(),
            every,
            last: None,
            watts_per_core: None,
        })
    }

    /// The measured rate, recomputed when the last sample is old enough.
    fn watts_per_core(&mut self) -> Option<f64> {
        if self.last.as_ref().is_none_or(|last| last.at.elapsed() >= self.every)
            && let Some(sample) = self.sample()
        {
            if let Some(last) = &self.last {
                let joules: f64 = (sample.energy_uj.iter().zip(&last.energy_uj).zip(&self.zones))
                    .map(|((now, then), (_, range))| wrapping_delta(*now, *then, *range) as f64 / 1e6)
                    .sum();
                let busy = sample.busy_seconds - last.busy_seconds;
                if busy >= MIN_BUSY_SECONDS {
                    self.watts_per_core = Some(joules / busy);
                }
            }
            self.last = Some(sample);
        }
        self.watts_per_core
    }

    fn sample(&self) -> Option<Sample> {
        let energy_uj = self.zones.iter().map(|(path, _)| read_u64(path)).collect::<Option<Vec<_>>>()?;
        Some(Sample { at: Instant::now(), energy_uj, busy_seconds: busy_seconds(&self.proc_stat)? })
    }
}

fn wrapping_delta(now: u64, then: u64, range: u64) -> u64 {
    if now >= then { now - then } else { range.saturating_sub(then) + now }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Seconds all CPUs together spent busy since boot (the `cpu` line of /proc/stat).
fn busy_seconds(proc_stat: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(proc_stat).ok()?;
    let fields: Vec<u64> =
        text.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: u64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy as f64 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_rapl_energy_is_estimated_from_cpu_time() {
        let dir = tempfile::tempdir().unwrap();
        let meter = EnergyMeter::with_sources(10.0, dir.path(), Path::new("/proc/stat"), CALIBRATE_EVERY);
        let (uwh, source) = meter.energy_uwh(Duration::from_secs(36));
        assert_eq!(source, EnergySource::Estimated);
        // 36 s at 10 W = 360 J = 0.1 Wh.
        assert!((uwh - 100_000.0).abs() < 1e-6, "{uwh}");
    }

    #[test]
    fn with_rapl_the_rate_is_package_energy_per_busy_core_second() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("intel-rapl:0");
        std::fs::create_dir_all(zone.join("intel-rapl:0:0")).unwrap();
        std::fs::write(zone.join("max_energy_range_uj"), "1000000000").unwrap();
        let stat = dir.path().join("stat");
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let write = |energy_uj: u64, busy_ticks: u64| {
            std::fs::write(zone.join("energy_uj"), energy_uj.to_string()).unwrap();
            std::fs::write(&stat, format!("cpu  {busy_ticks} 0 0 500 0 0 0 0 0 0\ncpu0 1 2 3\n")).unwrap();
        };
        write(999_000_000, 0);
        let meter = EnergyMeter::with_sources(10.0, dir.path(), &stat, Duration::ZERO);
        assert_eq!(meter.model().source, EnergySource::Estimated, "one sample is no rate yet");
        // 2 s of busy CPU while the package used 30 J (across a counter wrap).
        write(29_000_000, 2 * ticks);
        let model = meter.model();
        assert_eq!(model.source, EnergySource::Measured);
        assert!((model.watts_per_core - 15.0).abs() < 1e-9, "{model:?}");
    }
}
