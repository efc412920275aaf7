//! Paging of key lists: `PageSize` (1–1000, default 50), `Page`, `PageToken` (`PA<sid>` = after
//! that item, `PB<sid>` = before it, as Twilio's tokens look). Tokens survive deletions because
//! deleted keys keep their place in creation order.

use super::errors::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PageToken {
    After(String),
    Before(String),
}

impl PageToken {
    pub fn encode(&self) -> String {
        match self {
            PageToken::After(s) => format!("PA{s}"),
            PageToken::Before(s) => format!("PB{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageParams {
    pub page_size: usize,
    pub page: usize,
    pub token: Option<PageToken>,
}

pub(crate) fn params(query: &[(String, String)]) -> Result<PageParams, ApiError> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let page_size = match get("PageSize") {
        None => 50,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_param(
                    "PageSize must be between 1 and 1000",
                ))
            }
        },
    };
    let page = match get("Page") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_param("Page must be a non-negative integer"))?,
    };
    let token = match get("PageToken") {
        None | Some("") => None,
        Some(t) => Some(if let Some(s) = t.strip_prefix("PA") {
            PageToken::After(s.to_string())
        } else if let Some(s) = t.strip_prefix("PB") {
            PageToken::Before(s.to_string())
        } else {
            return Err(ApiError::invalid_param("Invalid PageToken"));
        }),
    };
    Ok(PageParams {
        page_size,
        page,
        token,
    })
}

/// One page over `all` (every item ever, in order, with a `live` flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slice {
    /// Offset of the first item among live items.
    pub start: usize,
    /// Sids of the live items on this page.
    pub sids: Vec<String>,
    pub next: Option<PageToken>,
    pub previous: Option<PageToken>,
}

pub(crate) fn slice(all: &[(String, bool)], p: &PageParams) -> Result<Slice, ApiError> {
    let live: Vec<&str> = all
        .iter()
        .filter(|(_, live)| *live)
        .map(|(s, _)| s.as_str())
        .collect();
    let live_before = |pos: usize| all[..pos].iter().filter(|(_, l)| *l).count();
    let position = |sid: &str| {
        all.iter()
            .position(|(s, _)| s == sid)
            .ok_or_else(|| ApiError::invalid_param("Invalid PageToken"))
    };
    let start = match &p.token {
        None => p.page.saturating_mul(p.page_size).min(live.len()),
        Some(PageToken::After(sid)) => live_before(position(sid)? + 1),
        Some(PageToken::Before(sid)) => live_before(position(sid)?).saturating_sub(p.page_size),
    };
    let end = match &p.token {
        Some(PageToken::Before(sid)) => live_before(position(sid)?),
        _ => (start + p.page_size).min(live.len()),
    };
    let sids: Vec<String> = live[start..end].iter().map(|s| s.to_string()).collect();
    let next = (end < live.len())
        .then(|| sids.last().map(|s| PageToken::After(s.clone())))
        .flatten();
    let previous = (start > 0)
        .then(|| sids.first().map(|s| PageToken::Before(s.clone())))
        .flatten();
    Ok(Slice {
        start,
        sids,
        next,
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn params_validate() {
        assert_eq!(params(&[]).unwrap().page_size, 50);
        assert!(params(&q(&[("PageSize", "0")])).is_err());
        assert!(params(&q(&[("PageSize", "1001")])).is_err());
        assert_eq!(params(&q(&[("PageSize", "1000")])).unwrap().page_size, 1000);
        assert!(params(&q(&[("PageToken", "XX")])).is_err());
        assert_eq!(
            params(&q(&[("PageToken", "PASK1")])).unwrap().token,
            Some(PageToken::After("SK1".into()))
        );
    }

    #[test]
    fn tokens_walk_forward_and_back_across_deletions() {
        let mut all: Vec<(String, bool)> = (0..7).map(|i| (format!("K{i}"), true)).collect();
        let p = |token| PageParams {
            page_size: 3,
            page: 0,
            token,
        };
        let first = slice(&all, &p(None)).unwrap();
        assert_eq!(first.sids, ["K0", "K1", "K2"]);
        assert!(first.previous.is_none());
        // Delete the last item of page one: the token still points after it.
        all[2].1 = false;
        let second = slice(&all, &p(first.next.clone())).unwrap();
        assert_eq!(second.sids, ["K3", "K4", "K5"]);
        assert_eq!(second.start, 2);
        let third = slice(&all, &p(second.next.clone())).unwrap();
        assert_eq!(third.sids, ["K6"]);
        assert!(third.next.is_none());
        let back = slice(&all, &p(third.previous.clone())).unwrap();
        assert_eq!(back.sids, ["K3", "K4", "K5"]);
        let by_index = slice(
            &all,
            &PageParams {
                page_size: 3,
                page: 1,
                token: None,
            },
        )
        .unwrap();
        assert_eq!(by_index.sids, ["K4", "K5", "K6"]);
        let empty = slice(&[], &p(None)).unwrap();
        assert!(empty.sids.is_empty() && empty.next.is_none());
    }
}
