//! One parameter for a store given by value or as a handle the caller keeps.

use std::sync::Arc;

use super::{ConsumerStore, EventStore, KeyStore, PersonalStore};

/// What the library keeps behind an `Arc<T>`: a value it then owns, or an `Arc` the caller
/// keeps a handle to as well.
///
/// Methods that hold a store or the vault take `impl Shared<..>`, so there is no `*_shared`
/// twin: pass the store itself, or an `Arc` of it (typed or `dyn`) to share it.
///
/// ```
/// # use std::sync::Arc;
/// use eventsourcery::{CommandBus, EventStore, MemoryStore};
///
/// let bus = CommandBus::builder(MemoryStore::new()).build()?;
/// // The same store under two buses: pass a handle.
/// let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
/// let first = CommandBus::builder(Arc::clone(&store)).build()?;
/// let second = CommandBus::builder(store).build()?;
/// assert!(Arc::ptr_eq(first.store(), second.store()));
/// # Ok::<(), eventsourcery::event::RegistryError>(())
/// ```
pub trait Shared<T: ?Sized> {
    /// The value behind an `Arc`, without wrapping an `Arc` in another.
    fn shared(self) -> Arc<T>;
}

impl<T> Shared<T> for T {
    fn shared(self) -> Arc<T> {
        Arc::new(self)
    }
}

impl<T: ?Sized> Shared<T> for Arc<T> {
    fn shared(self) -> Arc<T> {
        self
    }
}

/// A store, or a typed handle to one, as the `dyn` store the library holds.
macro_rules! shared_store {
    ($($store:ident),*) => {$(
        impl<S: $store> Shared<dyn $store> for S {
            fn shared(self) -> Arc<dyn $store> {
                Arc::new(self)
            }
        }

        impl<S: $store> Shared<dyn $store> for Arc<S> {
            fn shared(self) -> Arc<dyn $store> {
                self
            }
        }
    )*};
}

shared_store!(EventStore, KeyStore, PersonalStore, ConsumerStore);

/// A consumer store is an event store: the dispatcher's handle serves the bus too.
impl Shared<dyn EventStore> for Arc<dyn ConsumerStore> {
    fn shared(self) -> Arc<dyn EventStore> {
        self
    }
}
