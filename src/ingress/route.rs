//! The webhook routes: the URL paths Authvia calls, each a [`Route`]. The handler, the metrics,
//! the 404 message, tests and docs all name a route through this one type.

use std::fmt;

use crate::ingress::webhook::EventKind;

/// A URL path of the webhook listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `business_processes.update` deliveries.
    BusinessProcesses,
    /// `business_processes_actions.update` deliveries.
    BusinessProcessActions,
    /// Where Authvia's `disableCallbackURL` should point: it calls it when it disabled a
    /// Subscription.
    SubscriptionDisabled,
}

impl Route {
    /// Every route, in the order the 404 message lists them.
    pub const ALL: [Route; 3] = [
        Self::BusinessProcesses,
        Self::BusinessProcessActions,
        Self::SubscriptionDisabled,
    ];

    /// The route's path.
    pub const fn path(self) -> &'static str {
        match self {
            Self::BusinessProcesses => "/webhooks/business-processes",
            Self::BusinessProcessActions => "/webhooks/business-process-actions",
            Self::SubscriptionDisabled => "/webhooks/subscription-disabled",
        }
    }

    /// The methods it takes: its `Allow` header.
    pub const fn methods(self) -> &'static str {
        match self {
            Self::BusinessProcesses | Self::BusinessProcessActions => "POST",
            Self::SubscriptionDisabled => "GET, HEAD",
        }
    }

    /// The route at `path` (a trailing slash is the same path), if any.
    pub fn of(path: &str) -> Option<Route> {
        let path = path.trim_end_matches('/');
        Self::ALL.into_iter().find(|route| route.path() == path)
    }

    /// The kind of event its deliveries carry; none for the disable callback.
    pub const fn kind(self) -> Option<EventKind> {
        match self {
            Self::BusinessProcesses => Some(EventKind::BusinessProcess),
            Self::BusinessProcessActions => Some(EventKind::Action),
            Self::SubscriptionDisabled => None,
        }
    }

    /// The route whose deliveries carry `kind`.
    pub const fn carrying(kind: EventKind) -> Route {
        match kind {
            EventKind::BusinessProcess => Self::BusinessProcesses,
            EventKind::Action => Self::BusinessProcessActions,
        }
    }
}

/// Every route with its methods, for the 404 message:
/// `POST /webhooks/business-processes, POST ... and GET, HEAD /webhooks/subscription-disabled`.
pub struct Listing;

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, route) in Route::ALL.iter().enumerate() {
            let separator = match n {
                0 => "",
                n if n + 1 == Route::ALL.len() => " and ",
                _ => ", ",
            };
            write!(f, "{separator}{} {}", route.methods(), route.path())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_its_route_with_or_without_a_trailing_slash() {
        for route in Route::ALL {
            assert_eq!(Route::of(route.path()), Some(route));
            assert_eq!(Route::of(&format!("{}/", route.path())), Some(route));
        }
        assert_eq!(Route::of("/webhooks"), None);
        assert_eq!(Route::of("/webhooks/business-processes/x"), None);
    }

    #[test]
    fn each_kind_has_its_route_and_back() {
        for kind in EventKind::ALL {
            assert_eq!(Route::carrying(kind).kind(), Some(kind));
        }
    }

    #[test]
    fn the_listing_names_every_route_with_its_methods() {
        assert_eq!(
            Listing.to_string(),
            "POST /webhooks/business-processes, POST /webhooks/business-process-actions and GET, HEAD /webhooks/subscription-disabled"
        );
    }
}
