//! LocalSend bodies: what a device on the LAN sends this node's LocalSend
//! discovery and HTTPS server (announcements, `register`, `info`,
//! `prepare-upload`), read exactly as the node reads them.

use peerconnect::localsend::fuzzing;
use peerconnect::proto::wire;

use crate::check_safe;

/// The first byte picks the reader; the rest is the JSON body.
pub fn localsend(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if sel % 2 == 0 {
        if let Some((Some(d), _is_peerconnect)) = fuzzing::info(body) {
            check_device(&d);
        }
    } else if let Some((dev, m, tokens)) = fuzzing::prepare_upload(body) {
        if let Some(d) = dev {
            check_device(&d);
        }
        // One token per file of the offer, never more than the bound.
        assert_eq!(tokens, m.files(), "tokens and files disagree");
        assert!(tokens > 0 && tokens <= fuzzing::MAX_FILES);
        for i in 0..m.len() as u32 {
            check_safe(m.path(i).expect("path"));
        }
    }
}

/// What a device may make the node hold and show: bounded, printable.
fn check_device(d: &peerconnect::event::LocalSendDevice) {
    assert!(
        !d.alias.is_empty() && d.alias.len() <= wire::MAX_NAME_LEN,
        "{d:?}"
    );
    assert!(!d.fingerprint.is_empty() && d.fingerprint.len() <= fuzzing::MAX_FIELD);
    for f in [
        &d.alias,
        &d.fingerprint,
        &d.version,
        &d.device_type,
        &d.protocol,
    ] {
        assert!(!f.chars().any(char::is_control), "{d:?}");
        assert!(f.len() <= fuzzing::MAX_FIELD, "{d:?}");
    }
    if let Some(m) = &d.device_model {
        assert!(!m.chars().any(char::is_control) && m.len() <= fuzzing::MAX_FIELD);
    }
    assert!(matches!(d.protocol.as_str(), "http" | "https"), "{d:?}");
}
