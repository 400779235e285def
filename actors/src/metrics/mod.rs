//! The MetricsActor (work in progress)
