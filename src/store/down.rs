//! A store whose every call fails, as an unreachable backend would (tests only).

use std::time::SystemTime;

use super::{
    Binding, Counter, EnrolLink, Enrolment, EnrolmentInfo, Grant, Key, Lock, LockPolicy,
    StateStore, StepUpStore, StoreError,
};

/// Fails every call with [`StoreError::Backend`].
pub struct Down;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend("down".into()))
}

impl StateStore for Down {
    fn add_failure(&self, _: &Key, _: SystemTime, _: &LockPolicy) -> Result<Counter, StoreError> {
        down()
    }
    fn lock(&self, _: &Key, _: SystemTime) -> Result<Option<Lock>, StoreError> {
        down()
    }
    fn reset(&self, _: &Key) -> Result<(), StoreError> {
        down()
    }
    fn locks(
        &self,
        _: Option<&str>,
        _: Option<super::Scope>,
        _: SystemTime,
        _: usize,
    ) -> Result<Vec<(Key, Lock)>, StoreError> {
        down()
    }
    fn clear(&self, _: &str, _: Option<&str>, _: Option<&str>) -> Result<usize, StoreError> {
        down()
    }
    fn sweep(&self, _: SystemTime) -> Result<usize, StoreError> {
        down()
    }
    fn ping(&self) -> Result<(), StoreError> {
        down()
    }
}

impl StepUpStore for Down {
    fn put_binding(&self, _: &Binding) -> Result<(), StoreError> {
        down()
    }
    fn binding(&self, _: &str, _: &str, _: SystemTime) -> Result<Option<Binding>, StoreError> {
        down()
    }
    fn end_binding(&self, _: &str, _: &str) -> Result<usize, StoreError> {
        down()
    }
    fn put_grant(&self, _: &Grant) -> Result<(), StoreError> {
        down()
    }
    fn grant(&self, _: &str, _: &str, _: SystemTime) -> Result<Option<Grant>, StoreError> {
        down()
    }
    fn enrolment(&self, _: &str, _: &str) -> Result<Option<Enrolment>, StoreError> {
        down()
    }
    fn put_enrolment(&self, _: &Enrolment, _: &[String]) -> Result<(), StoreError> {
        down()
    }
    fn activate_enrolment(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: SystemTime,
        _: &[String],
    ) -> Result<bool, StoreError> {
        down()
    }
    fn delete_enrolment(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        down()
    }
    fn enrolments(&self, _: Option<&str>) -> Result<Vec<EnrolmentInfo>, StoreError> {
        down()
    }
    fn accept_step(&self, _: &str, _: &str, _: u64, _: SystemTime) -> Result<bool, StoreError> {
        down()
    }
    fn use_recovery(&self, _: &str, _: &str, _: &str, _: SystemTime) -> Result<bool, StoreError> {
        down()
    }
    fn put_link(&self, _: &EnrolLink) -> Result<(), StoreError> {
        down()
    }
    fn link(&self, _: &str, _: SystemTime) -> Result<Option<EnrolLink>, StoreError> {
        down()
    }
    fn take_link(&self, _: &str) -> Result<bool, StoreError> {
        down()
    }
}

impl super::TokenStore for Down {
    fn put_token(&self, _: &super::TokenRecord) -> Result<(), StoreError> {
        down()
    }
    fn token(&self, _: &str) -> Result<Option<super::TokenRecord>, StoreError> {
        down()
    }
    fn tokens(&self, _: Option<&str>) -> Result<Vec<super::TokenRecord>, StoreError> {
        down()
    }
    fn revoke_token(&self, _: &str, _: SystemTime) -> Result<bool, StoreError> {
        down()
    }
    fn rotate_token(&self, _: &str, _: &str, _: SystemTime) -> Result<bool, StoreError> {
        down()
    }
    fn record_use(&self, _: &str, _: u64, _: SystemTime) -> Result<(), StoreError> {
        down()
    }
    fn token_version(&self) -> Result<i64, StoreError> {
        down()
    }
}
