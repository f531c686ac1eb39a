//! Which part of the facts this process takes: `--shard K/N`, or the environment of SLURM
//! arrays, Kubernetes Indexed Jobs or torch-style `RANK`/`WORLD_SIZE`.

use anyhow::{bail, Context, Result};

/// Shard `index` of `count` takes the facts whose position in id order is `index` mod `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole dataset.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `K/N`.
    pub fn parse(s: &str) -> Result<Self> {
        let (k, n) = s.split_once('/').with_context(|| format!("--shard {s:?}: expected K/N"))?;
        let num = |v: &str, what: &str| -> Result<usize> {
            v.trim().parse().with_context(|| format!("--shard {s:?}: the {what} {v:?} is not a number"))
        };
        let shard = Shard { index: num(k, "index")?, count: num(n, "count")? };
        shard.check()
    }

    fn check(self) -> Result<Self> {
        if self.count == 0 || self.index >= self.count {
            bail!("shard {}/{} is out of range (need 0 <= K < N)", self.index, self.count);
        }
        Ok(self)
    }

    /// From `--shard`, else the scheduler's environment (`get` reads a variable), else all.
    ///
    /// SLURM: `SLURM_ARRAY_TASK_ID` (minus `SLURM_ARRAY_TASK_MIN`) / `SLURM_ARRAY_TASK_COUNT`;
    /// Kubernetes: `JOB_COMPLETION_INDEX` / `KN_SHARDS`; torch: `RANK` / `WORLD_SIZE`.
    pub fn resolve(flag: Option<&str>, get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(s) = flag {
            return Self::parse(s);
        }
        let num = |k: &str| -> Result<Option<usize>> {
            get(k).map(|v| v.trim().parse::<usize>().with_context(|| format!("{k}={v:?} is not a number"))).transpose()
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?
                .context("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT: pass --shard K/N")?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            return Shard { index: id.saturating_sub(min), count }.check();
        }
        if let Some(id) = num("JOB_COMPLETION_INDEX")? {
            let count =
                num("KN_SHARDS")?.context("JOB_COMPLETION_INDEX is set: set KN_SHARDS to the job's completions")?;
            return Shard { index: id, count }.check();
        }
        if let Some(rank) = num("RANK")? {
            let world = num("WORLD_SIZE")?.context("RANK is set without WORLD_SIZE: pass --shard K/N")?;
            return Shard { index: rank, count: world }.check();
        }
        Ok(Self::ALL)
    }

    /// Whether the `position`-th fact (in id order) is ours.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// The results file name of this shard.
    pub fn file_name(&self) -> String {
        if self.count == 1 {
            "results.jsonl".into()
        } else {
            format!("results.shard-{:04}-of-{:04}.jsonl", self.index, self.count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn shards_come_from_flags_or_schedulers() {
        assert_eq!(Shard::resolve(Some("2/8"), env(&[])).unwrap(), Shard { index: 2, count: 8 });
        assert_eq!(
            Shard::resolve(
                None,
                env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "2")])
            )
            .unwrap(),
            Shard { index: 3, count: 4 }
        );
        assert_eq!(
            Shard::resolve(None, env(&[("JOB_COMPLETION_INDEX", "1"), ("KN_SHARDS", "3")])).unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(
            Shard::resolve(None, env(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap(),
            Shard { index: 0, count: 2 }
        );
        assert_eq!(Shard::resolve(None, env(&[])).unwrap(), Shard::ALL);
        assert!(Shard::parse("3/3").is_err());
        assert!(Shard::resolve(None, env(&[("JOB_COMPLETION_INDEX", "1")])).is_err());
        // Half a scheduler's environment is an error, not the whole dataset as shard 0/1.
        let err = Shard::resolve(None, env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap_err().to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_COUNT"), "{err}");
        let err = Shard::resolve(None, env(&[("RANK", "1")])).unwrap_err().to_string();
        assert!(err.contains("WORLD_SIZE"), "{err}");
    }
}
