//! The CacheActor (work in progress)
