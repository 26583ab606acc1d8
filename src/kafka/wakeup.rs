//! The producer's main queue (delivery reports, statistics, errors), waking a tokio task when
//! it has something to serve.
//!
//! rust-rdkafka's `FutureProducer` serves that queue on a thread of its own, which a report
//! wakes and which then wakes the runtime in turn: two thread wake-ups per report. Here
//! librdkafka calls [`wake`] itself when the queue goes from empty to non-empty, and the task it
//! wakes serves the queue on the runtime (`Generation::serve_reports`).

use std::{ffi::c_void, sync::Arc};

use rdkafka::bindings as rdsys;
use tokio::sync::Notify;

/// A handle on the main queue with the wake-up registered; unregistered when dropped.
pub(super) struct Wakeup {
    queue: *mut rdsys::rd_kafka_queue_t,
    // librdkafka holds a pointer to it until the registration is removed in `drop`.
    notify: Arc<Notify>,
}

// SAFETY: librdkafka's queue handles may be used from any thread (every operation takes the
// queue's lock), and `Notify` is `Sync`.
#[allow(unsafe_code)]
unsafe impl Send for Wakeup {}
#[allow(unsafe_code)]
unsafe impl Sync for Wakeup {}

impl Wakeup {
    /// Registers the wake-up on the main queue of the client `client`.
    ///
    /// # Safety
    /// `client` is a live client handle that outlives the returned `Wakeup` (librdkafka wants
    /// every queue handle destroyed before the client is).
    #[allow(unsafe_code)]
    pub(super) unsafe fn register(client: *mut rdsys::rd_kafka_t) -> Wakeup {
        let notify = Arc::new(Notify::new());
        // SAFETY: the caller vouches for `client`; the opaque pointer stays valid until `drop`
        // removes the registration, as `self.notify` keeps the `Notify` alive until then.
        unsafe {
            let queue = rdsys::rd_kafka_queue_get_main(client);
            rdsys::rd_kafka_queue_cb_event_enable(
                queue,
                Some(wake),
                Arc::as_ptr(&notify).cast_mut().cast::<c_void>(),
            );
            Wakeup { queue, notify }
        }
    }

    /// Whether the queue holds nothing to serve.
    #[allow(unsafe_code)]
    pub(super) fn is_empty(&self) -> bool {
        // SAFETY: the handle is live until `drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.queue) == 0 }
    }

    /// What the wake-ups notify. A wake-up comes only when the queue goes from empty to
    /// non-empty: serve it until it is empty before waiting again (a wake-up that comes while
    /// nobody waits is kept for the next wait).
    pub(super) fn wakeups(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

impl Drop for Wakeup {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the handle is live. Removing the registration takes the queue's lock, under
        // which librdkafka calls `wake`: no call is running or can start once this returns, so
        // the `Notify` may go.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue, None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue);
        }
    }
}

/// Called by librdkafka, on its own thread and under the queue's lock, when the queue goes
/// from empty to non-empty. It must not call librdkafka: it only wakes the serving task (a
/// wake-up while the task is busy is kept for its next wait).
#[allow(unsafe_code)]
unsafe extern "C" fn wake(_client: *mut rdsys::rd_kafka_t, notify: *mut c_void) {
    // SAFETY: the pointer registered in `Wakeup::register`, alive until its `drop`.
    let notify = unsafe { &*notify.cast::<Notify>() };
    notify.notify_one();
}
