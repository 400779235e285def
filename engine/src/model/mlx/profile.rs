//! Where a forward pass spends its time. MLX is lazy, so the only way to charge time to an
//! operation is to evaluate right after it: a profiled pass evaluates after every group of
//! operations and adds the elapsed time to that group. The total is therefore a little above an
//! unprofiled pass (no overlap between groups), but the split is what guides the work.

use std::time::{Duration, Instant};

use mlx_rs::error::Exception;
use mlx_rs::transforms::eval;
use mlx_rs::Array;

/// Accumulated time per operation group, in first-seen order.
pub struct Profile {
    last: Instant,
    groups: Vec<(&'static str, Duration, u32)>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            last: Instant::now(),
            groups: Vec::new(),
        }
    }
}

impl Profile {
    /// Starts the clock for the next group (call before a pass).
    pub fn restart(&mut self) {
        self.last = Instant::now();
    }

    /// Evaluates `arrays` and charges the time since the previous mark to `group`.
    pub fn mark(&mut self, group: &'static str, arrays: &[&Array]) -> Result<(), Exception> {
        eval(arrays.iter().copied())?;
        let now = Instant::now();
        let spent = now - self.last;
        self.last = now;
        match self.groups.iter_mut().find(|(name, _, _)| *name == group) {
            Some((_, total, calls)) => {
                *total += spent;
                *calls += 1;
            }
            None => self.groups.push((group, spent, 1)),
        }
        Ok(())
    }

    /// (group, total time, number of marks), in the order groups first appeared.
    pub fn groups(&self) -> &[(&'static str, Duration, u32)] {
        &self.groups
    }

    pub fn total(&self) -> Duration {
        self.groups.iter().map(|(_, d, _)| *d).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_each_group_and_counts_marks() {
        let mut p = Profile::default();
        let a = Array::from_slice(&[1.0f32, 2.0], &[2]);
        let b = a.multiply(&a).unwrap();
        p.mark("square", &[&b]).unwrap();
        let c = b.add(&a).unwrap();
        p.mark("add", &[&c]).unwrap();
        let d = c.multiply(&c).unwrap();
        p.mark("square", &[&d]).unwrap();
        let names: Vec<_> = p.groups().iter().map(|(n, _, k)| (*n, *k)).collect();
        assert_eq!(names, vec![("square", 2), ("add", 1)]);
        assert_eq!(p.total(), p.groups().iter().map(|g| g.1).sum::<Duration>());
        // The marks evaluated the arrays.
        assert_eq!(d.as_slice::<f32>(), &[4.0, 36.0]);
    }
}
