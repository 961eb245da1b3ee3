//! Seed inputs made from real encoded messages, in each target's input format.
//! `cargo run -p peerconnect-fuzz --example seeds` writes them to `corpus/`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use peerconnect::proto::kademlia::{self, Contact, Key};
use peerconnect::proto::messaging::{Envelope, Message as Dm, MessageId};
use peerconnect::proto::mux;
use peerconnect::proto::transfer::{Entry, ToReceiver, ToSender, TransferId, resume};
use peerconnect::proto::wire::{self, Datagram, DeviceKind, Hello, StreamKind};
use peerconnect::proto::{discovery, gossip, hyparview, plumtree, rooms as room, rumor};

use crate::{Program, addr, identities, peer};

/// A seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(wire());
    out.extend(discovery());
    out.extend(mux_frame());
    out.extend(mux_state());
    out.extend(transfer());
    out.extend(safe_path());
    out.extend(messaging());
    out.extend(gossip());
    out.extend(kademlia());
    out.extend(web());
    out.extend(transfer_sender());
    out.extend(rooms());
    out.extend(tree());
    out.extend(tree_coordinator());
    out.extend(localsend());
    out.extend(
        peerconnect::net::transfer::tree_fuzzing::seeds()
            .into_iter()
            .map(|(name, bytes)| ("tree_stream", name, bytes)),
    );
    out
}

fn frame<T: serde::Serialize>(m: &T) -> Vec<u8> {
    let mut b = Vec::new();
    wire::encode_frame(m, &mut b).expect("encodes");
    b
}

fn envelope(n: u128, text: &str) -> Envelope {
    Envelope {
        id: MessageId::from_parts(1_700_000_000_000, n),
        sent_ms: 1_700_000_000_000,
        text: text.into(),
        reply_to: None,
    }
}

fn announce(signer: usize, name: &str, ts: u64, reply: bool) -> discovery::Announce {
    discovery::Announce {
        id: identities()[signer].peer_id(),
        instance: signer as u64,
        name: name.into(),
        kind: DeviceKind::Laptop,
        tcp_port: 47471,
        version: wire::VERSION,
        timestamp_ms: ts,
        reply,
    }
}

fn signed(signer: usize, name: &str, ts: u64) -> discovery::SignedAnnounce {
    discovery::SignedAnnounce::sign(announce(signer, name, ts, false), &identities()[signer])
}

fn pinfo(i: u8) -> hyparview::PeerInfo {
    hyparview::PeerInfo {
        id: peer(i),
        data: hyparview::PeerData(vec![i, 0, 1]),
    }
}

fn record(signer: usize, bytes: bool) -> kademlia::Record {
    let id = &identities()[signer];
    if bytes {
        kademlia::Record::sign(
            id,
            Key::for_value(b"k"),
            1,
            1_700_000_600_000,
            kademlia::Value::Bytes(b"value".to_vec()),
        )
    } else {
        kademlia::Record::sign(
            id,
            Key::for_peer(&id.peer_id()),
            1,
            1_700_000_600_000,
            kademlia::Value::Peer(kademlia::record::PeerInfo {
                name: "laptop".into(),
                addrs: vec![addr(7)],
            }),
        )
    }
}

fn dht_messages() -> Vec<kademlia::Message> {
    let from = peer(2);
    let contact = Contact::new(peer(3), addr(3));
    vec![
        kademlia::Message::Ping { from, rpc: 1 },
        kademlia::Message::Pong { from, rpc: 1 },
        kademlia::Message::FindNode {
            from,
            rpc: 2,
            target: Key::for_peer(&peer(4)),
        },
        kademlia::Message::Nodes {
            from,
            rpc: 2,
            closer: vec![contact, Contact::new(peer(4), addr(4))],
        },
        kademlia::Message::FindValue {
            from,
            rpc: 3,
            key: Key::for_value(b"k"),
        },
        kademlia::Message::Value {
            from,
            rpc: 3,
            records: vec![record(2, true)],
            closer: vec![contact],
        },
        kademlia::Message::Store {
            from,
            rpc: 4,
            record: record(2, false),
        },
        kademlia::Message::Stored {
            from,
            rpc: 4,
            accepted: true,
        },
    ]
}

fn gossip_bodies() -> Vec<gossip::Body> {
    let id = plumtree::MessageId::of(b"hello room");
    vec![
        gossip::Body::Membership(hyparview::Message::Join {
            data: hyparview::PeerData(vec![1, 2]),
        }),
        gossip::Body::Membership(hyparview::Message::ForwardJoin {
            peer: pinfo(3),
            ttl: 3,
        }),
        gossip::Body::Membership(hyparview::Message::Neighbor {
            priority: hyparview::Priority::High,
            data: hyparview::PeerData(vec![2]),
        }),
        gossip::Body::Membership(hyparview::Message::NeighborReply { accepted: true }),
        gossip::Body::Membership(hyparview::Message::Disconnect { alive: true }),
        gossip::Body::Membership(hyparview::Message::Shuffle {
            origin: pinfo(2),
            nodes: vec![pinfo(4), pinfo(5)],
            ttl: 2,
        }),
        gossip::Body::Membership(hyparview::Message::ShuffleReply {
            nodes: vec![pinfo(3)],
        }),
        gossip::Body::Plumtree(plumtree::Message::Gossip {
            payload: plumtree::Payload::from(b"hello room".to_vec()),
            hops: 0,
        }),
        gossip::Body::Plumtree(plumtree::Message::IHave(vec![plumtree::IHave {
            id,
            hops: 1,
        }])),
        gossip::Body::Plumtree(plumtree::Message::Graft(Some(id))),
        gossip::Body::Plumtree(plumtree::Message::Prune),
        gossip::Body::Rumor(rumor::Message::Rumor {
            payload: plumtree::Payload::from(b"hello room".to_vec()),
            hops: 1,
        }),
        gossip::Body::Rumor(rumor::Message::Known(id)),
    ]
}

fn wire() -> Vec<Seed> {
    let mut out = Vec::new();
    let topic = gossip::TopicId::from_name("room");
    let mut control = Vec::new();
    for m in [
        wire::Message::Ping(1),
        wire::Message::Pong(1),
        wire::Message::Dm(Dm::Deliver(envelope(1, "hello"))),
        wire::Message::Dm(Dm::Ack {
            ids: vec![envelope(1, "").id],
        }),
        wire::Message::Dm(Dm::Read {
            ids: vec![envelope(1, "").id, envelope(2, "").id],
        }),
    ] {
        control.extend(frame(&m));
    }
    for body in gossip_bodies() {
        control.extend(frame(&wire::Message::Gossip(gossip::Message {
            topic,
            body,
        })));
    }
    out.push(("wire", "control-stream".into(), control));
    out.push((
        "wire",
        "hello".into(),
        frame(&Hello {
            instance: 7,
            name: "laptop".into(),
            kind: DeviceKind::Laptop,
            listen_port: 47471,
        }),
    ));
    out.push(("wire", "stream-kind".into(), frame(&StreamKind::Transfer)));
    out.push((
        "wire",
        "announce".into(),
        wire::encode_datagram(&Datagram::Announce(signed(1, "phone", 1_700_000_000_000))).unwrap(),
    ));
    for (i, m) in dht_messages().into_iter().enumerate() {
        out.push((
            "wire",
            format!("dht-{i}"),
            wire::encode_datagram(&Datagram::Dht(m)).unwrap(),
        ));
    }
    out
}

fn discovery() -> Vec<Seed> {
    let t0 = 1_700_000_000_000;
    let mut p = Program::default();
    p.op(5); // start
    for (i, signer) in [1u8, 2, 3, 4, 1].into_iter().enumerate() {
        p.op(1).u8(signer).u8(signer).u8(1).msg(&announce(
            signer as usize,
            "peer",
            t0 + i as u64,
            i % 2 == 0,
        ));
        p.op(4).u16(100);
    }
    let raw = wire::encode_datagram(&Datagram::Announce(signed(2, "tablet", t0 + 50))).unwrap();
    p.op(0).u8(9).chunk(&raw);
    p.op(0).u8(9).chunk(&raw); // a replay
    p.op(4).u16(2000).op(2).op(3);
    vec![("discovery", "announcements".into(), p.bytes.clone())]
}

fn mux_messages() -> Vec<mux::Message> {
    vec![
        mux::Message::Hello {
            version: mux::VERSION,
            session: 5,
        },
        mux::Message::Data {
            stream: 1,
            offset: 0,
            fin: false,
            bulk: false,
            payload: Bytes::from_static(b"hello"),
        },
        mux::Message::Data {
            stream: 1,
            offset: 5,
            fin: true,
            bulk: true,
            payload: Bytes::from_static(b"world"),
        },
        mux::Message::Window {
            stream: 2,
            max_offset: 4096,
        },
        mux::Message::Reset { stream: 3, code: 1 },
        mux::Message::Ack { frames: 2 },
        mux::Message::Ping { token: 9 },
        mux::Message::Pong { token: 9 },
        mux::Message::Close { code: 0 },
    ]
}

fn mux_bytes(m: &mux::Message) -> Vec<u8> {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    b.to_vec()
}

fn mux_frame() -> Vec<Seed> {
    let all: Vec<u8> = mux_messages().iter().flat_map(mux_bytes).collect();
    vec![("mux_frame", "every-frame".into(), all)]
}

fn mux_state() -> Vec<Seed> {
    let msgs = mux_messages();
    let mut p = Program::default();
    p.u8(0); // side
    p.u8(0).op(0).u8(1); // lane 0 added, dialed
    p.u8(0).op(2).chunk(&mux_bytes(&msgs[0])); // hello
    for m in &msgs[1..8] {
        p.u8(0).op(3).chunk(&mux_bytes(m));
    }
    p.u8(1).op(0).u8(0); // lane 1
    p.u8(1).op(2).chunk(&mux_bytes(&msgs[0]));
    p.u8(0).op(13).u8(1); // open a bulk stream
    p.u8(0).op(12).u16(1200).u8(1); // write to it
    p.u8(0).op(8).u8(1); // finish it
    p.u8(0).op(14).u8(0x81); // read stream 1
    p.u8(0).op(15).u8(0).u16(500); // time passes
    p.u8(1).op(1); // lane 1 closes
    p.u8(0).op(6).u16(4000); // written
    p.u8(0).op(15).u8(1); // flush
    let mut q = Program::default();
    q.u8(1).u8(2).op(0).u8(0);
    q.u8(2).op(4).chunk(&mux_bytes(&msgs[1])); // data before hello
    vec![
        ("mux_state", "session".into(), p.bytes.clone()),
        ("mux_state", "no-hello".into(), q.bytes.clone()),
    ]
}

fn transfer() -> Vec<Seed> {
    let entries = vec![
        Entry::dir("photos"),
        Entry::file("photos/a.jpg", 10),
        Entry::file("notes.txt", 3),
    ];
    let mut p = Program::default();
    p.u8(1); // trusted budget
    p.op(0).msg(&ToReceiver::Offer {
        id: TransferId(1),
        entries: 3,
        total_bytes: 13,
    });
    p.op(0).msg(&ToReceiver::Entries(entries.clone()));
    p.u8(1).u8(1).u8(1); // select all
    p.u64(4).u64(0); // the first file is partly here
    p.op(0).msg(&ToReceiver::Start {
        index: 1,
        offset: 4,
    });
    p.op(0).msg(&ToReceiver::Block { len: 6 });
    p.op(0).msg(&ToReceiver::End {
        index: 1,
        blake3: [1; 32],
    });
    p.op(0).msg(&ToReceiver::Skip {
        index: 2,
        reason: "gone".into(),
    });
    p.op(0).msg(&ToReceiver::Done);
    let mut q = Program::default();
    q.u8(0);
    for m in [
        ToSender::Accept {
            selected: vec![(0, 3)],
            proofs: 1,
        },
        ToSender::Reject {
            reason: "no".into(),
        },
        ToSender::Resume {
            index: 1,
            chunk: 1 << 20,
            hashes: vec![[2; 32]],
        },
        ToSender::Have {
            index: 1,
            blake3: [3; 32],
        },
        ToSender::FileOk { index: 1 },
        ToSender::FileFailed {
            index: 2,
            reason: "disk".into(),
        },
        ToSender::Summary { ok: 1, failed: 1 },
    ] {
        q.op(2).msg(&m);
    }
    q.op(3).msg(&entries);
    q.op(3)
        .msg(&vec![Entry::file("C:", 1), Entry::file("c:evil", 1)]);
    vec![
        ("transfer", "receive".into(), p.bytes.clone()),
        ("transfer", "answers".into(), q.bytes.clone()),
    ]
}

fn safe_path() -> Vec<Seed> {
    let paths = [
        "photos/2024/IMG 001.jpg",
        "a.tar.gz",
        ".bashrc",
        "ünïcødé/файл.txt",
        "C:",
        "c:foo",
        "dir/D:bar",
        "CON.txt",
        "com1",
        "LPT¹",
        "../etc/passwd",
        "/abs",
        "a//b",
        "a/./b",
        "a\\b",
        "10:30 meeting.txt",
        "folder\nfolder/file\nfolder/file/under",
    ];
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut b = vec![2u8];
            b.extend_from_slice(p.as_bytes());
            ("safe_path", format!("path-{i}"), b)
        })
        .collect()
}

fn messaging() -> Vec<Seed> {
    let mut p = Program::default();
    p.u8(0).op(0).u8(1); // link up, session 1
    p.u8(0).op(4); // queue one
    p.u8(0).op(4);
    p.u8(0).op(2).msg(&Dm::Deliver(envelope(7, "hi there")));
    p.u8(0).op(7).u8(1); // ack what was sent
    p.u8(0).op(2).msg(&Dm::Read {
        ids: vec![envelope(7, "").id],
    });
    p.u8(1).op(4);
    p.u8(1).op(0).u8(2);
    p.u8(1).op(5); // send failed
    p.u8(1).op(6); // resume timer
    p.u8(0).op(1); // link down
    p.u8(0).op(0).u8(3);
    vec![("messaging", "conversation".into(), p.bytes.clone())]
}

fn gossip() -> Vec<Seed> {
    let mut out = Vec::new();
    for (s, strategy) in ["plumtree", "rumor", "flood", "lan"].iter().enumerate() {
        let mut p = Program::default();
        p.u8(0).u8(0).op(0).u8(s as u8).u8(2); // join through two peers
        for (i, body) in gossip_bodies().iter().enumerate() {
            p.u8(0).u8(i as u8 % 3).op(2).msg(body);
            if i % 4 == 0 {
                p.u8(0).u8(0).op(9).u8(60);
            }
        }
        // The same broadcast from another peer: must not be delivered again.
        p.u8(0)
            .u8(2)
            .op(3)
            .msg(&gossip::Body::Plumtree(plumtree::Message::Gossip {
                payload: plumtree::Payload::from(b"hello room".to_vec()),
                hops: 2,
            }));
        p.u8(0)
            .u8(2)
            .op(3)
            .msg(&gossip::Body::Rumor(rumor::Message::Rumor {
                payload: plumtree::Payload::from(b"hello room".to_vec()),
                hops: 2,
            }));
        p.u8(0).u8(0).op(8).chunk(b"ours");
        p.u8(0).u8(0).op(7).u8(0);
        p.u8(0).u8(1).op(6); // connection lost
        p.u8(0).u8(0).op(7).u8(1);
        p.u8(0).u8(0).op(1); // leave
        out.push(("gossip", format!("topic-{strategy}"), p.bytes.clone()));
    }
    let _ = Duration::ZERO;
    out
}

fn kademlia() -> Vec<Seed> {
    let mut p = Program::default();
    for (i, m) in dht_messages().iter().enumerate() {
        p.u8(i as u8).op(1).msg(m);
    }
    p.u8(3)
        .op(3)
        .u8(1)
        .u8(1)
        .u32(60_000)
        .u8(1)
        .raw(b"laptop\0\0")
        .u8(4)
        .u8(5);
    p.u8(3)
        .op(3)
        .u8(2)
        .u8(2)
        .u32(60_000)
        .u8(0)
        .raw(b"kk")
        .chunk(b"v")
        .u8(6);
    p.u8(4).op(6).u8(4);
    p.u8(0).op(5).u8(0); // bootstrap
    p.u8(0).op(5).u8(3).raw(b"kk").chunk(b"value");
    p.u8(0).op(4).u8(0);
    p.u8(0).op(7).u16(200);
    p.u8(0).op(4).u8(1);
    let raw = wire::encode_datagram(&Datagram::Dht(dht_messages()[0].clone())).unwrap();
    p.u8(5).op(0).chunk(&raw);
    vec![("kademlia", "rpcs".into(), p.bytes.clone())]
}

fn web() -> Vec<Seed> {
    let bodies: [(u8, &str); 12] = [
        (0, r#"{"trust":"trusted"}"#),
        (0, r#"{"peer":"127.0.0.1:47471"}"#),
        (0, r#"{"pin":"123456","name":"My phone"}"#),
        (0, r#"{"text":"hello","reply_to":null}"#),
        (0, r#"{"up_to":"01HZZZZZZZZZZZZZZZZZZZZZZZ"}"#),
        (0, r#"{"name":"room"}"#),
        (
            0,
            r#"{"entries":[{"path":"a","dir":true},{"path":"a/b.txt","size":3}]}"#,
        ),
        (0, r#"{"entries":[{"path":"C:","size":1}]}"#),
        (
            0,
            r#"{"name":" laptop ","downloads":"/tmp/x","auto_accept_trusted":true}"#,
        ),
        (1, "before=01HZZZZZZZZZZZZZZZZZZZZZZZ&limit=10"),
        (1, "token=abc"),
        (2, "photos/IMG 001.jpg"),
    ];
    bodies
        .iter()
        .enumerate()
        .map(|(i, (sel, b))| {
            let mut v = vec![*sel];
            v.extend_from_slice(b.as_bytes());
            ("web", format!("request-{i}"), v)
        })
        .collect()
}

fn transfer_sender() -> Vec<Seed> {
    // The target's fixed manifest: d/, d/a (3 chunks and a bit), d/b, c, e.
    let mut p = Program::default();
    p.u8(0); // the fixed manifest
    p.op(0).msg(&ToSender::Accept {
        selected: vec![(0, 5)],
        proofs: 2,
    });
    p.op(0).msg(&ToSender::Resume {
        index: 1,
        chunk: resume::chunk_size(3 * resume::MIN_CHUNK + 5),
        hashes: vec![[7; 32], [7; 32]],
    });
    p.op(0).msg(&ToSender::Have {
        index: 4,
        blake3: [1; 32],
    });
    p.u8(7).u8(7); // our hashes of d/a's first two chunks: both match
    for ended in [true, true, false, true] {
        p.op(2).u8(ended as u8); // start d/a, d/b, c (skipped), e
    }
    p.op(3); // Done
    p.op(0).msg(&ToSender::FileOk { index: 1 });
    p.op(0).msg(&ToSender::FileOk { index: 2 });
    p.op(0).msg(&ToSender::FileFailed {
        index: 3,
        reason: "skipped".into(),
    });
    p.op(0).msg(&ToSender::FileOk { index: 4 });
    p.op(0).msg(&ToSender::Summary { ok: 3, failed: 1 });
    let mut q = Program::default();
    q.u8(1).msg(&vec![Entry::dir("x"), Entry::file("x/y", 9)]);
    q.op(0).msg(&ToSender::Reject {
        reason: "no thanks".into(),
    });
    vec![
        (
            "transfer_sender",
            "resume-and-replies".into(),
            p.bytes.clone(),
        ),
        ("transfer_sender", "reject".into(), q.bytes.clone()),
    ]
}

fn rooms() -> Vec<Seed> {
    let ids = identities();
    let message = |room: &str, text: &str| room::RoomMessage {
        id: room::RoomMessageId([9; 16]),
        room: room.into(),
        author: ids[1].peer_id(),
        author_name: "alice".into(),
        text: text.into(),
        time_ms: 1_700_000_000_000,
    };
    let mut p = Program::default();
    // A genuine payload as it arrives (room "lobby" is name 0).
    let genuine = room::SignedRoomMessage::sign(message("lobby", "hello room"), &ids[1]).encode();
    p.u8(0).op(0).chunk(&genuine);
    // The same in another room's topic.
    p.u8(1).op(0).chunk(&genuine);
    // Signed by the target: as the author, then as a forger; one byte changed.
    p.u8(0)
        .op(1)
        .u8(1)
        .u8(1)
        .u16(40)
        .u8(1)
        .msg(&message("lobby", "hi"));
    p.u8(1)
        .op(1)
        .u8(2)
        .u8(0)
        .u16(3)
        .u8(0)
        .msg(&message("staff", "not me"));
    vec![("rooms", "payloads".into(), p.bytes.clone())]
}

/// A whole session in one stripe from peer 2, then a corrupt relay in two
/// stripes: digests false and true, an outline part with a byte changed.
fn tree() -> Vec<Seed> {
    use crate::tree::{file, op};
    use peerconnect::proto::transfer::tree::Message as T;
    let groups = file().geo.groups();
    let mut whole = Program::default();
    whole.op(op::START).u8(0);
    whole.op(op::MESSAGE).u8(1).msg(&T::Attach {
        stripe: 0,
        parent: peer(2),
    });
    whole.op(op::OUTLINE).u8(2).u8(0).u8(groups as u8).u16(0);
    for i in 0..groups {
        whole.op(op::RECEIVED).u8(2).u32(i).u8(1);
        whole.op(op::STORED).u8(0);
    }
    // A child the sender assigned subscribes, and is sent what is held.
    whole.op(op::MESSAGE).u8(1).msg(&T::Serve {
        stripe: 0,
        child: peer(3),
    });
    whole.op(op::MESSAGE).u8(3).msg(&T::Subscribe {
        stripe: 0,
        outline: true,
        // one bit per group of the stripe: none held
        have: vec![0],
    });
    whole.op(op::MESSAGE).u8(3).msg(&T::Ack { index: 0 });
    whole.op(op::TIMER).u8(1).op(op::WAIT).u16(1000);
    whole.op(op::MESSAGE).u8(1).msg(&T::Release);

    let mut corrupt = Program::default();
    corrupt.op(op::START).u8(1);
    for (stripe, parent) in [(0, 2), (1, 4)] {
        corrupt.op(op::MESSAGE).u8(1).msg(&T::Attach {
            stripe,
            parent: peer(parent),
        });
    }
    corrupt
        .op(op::OUTLINE)
        .u8(2)
        .u8(0)
        .u8(groups as u8)
        .u16(0x0503);
    corrupt.op(op::OUTLINE).u8(2).u8(0).u8(groups as u8).u16(0);
    corrupt.op(op::RECEIVED).u8(2).u32(0).u8(0).raw(&[7; 32]);
    corrupt.op(op::RECEIVED).u8(4).u32(1).u8(1);
    corrupt
        .op(op::LOST)
        .u8(4)
        .op(op::WAIT)
        .u16(500)
        .op(op::TIMER)
        .u8(0);
    vec![
        ("tree", "session".into(), whole.bytes.clone()),
        ("tree", "corrupt-relay".into(), corrupt.bytes.clone()),
    ]
}

fn tree_coordinator() -> Vec<Seed> {
    use crate::tree_coordinator::{RECEIVERS, node, op};
    use peerconnect::proto::transfer::tree::{LostReason, Message as T};
    // Two stripes, degree 2, relaying, window 2, one strike, a lag of 2;
    // up to 8 receivers; the sender's rate unmeasured.
    let header = [0x11, 0x22, 6, 0];
    let real = 0x80; // LOST: the forest's real parent
    let joins = |p: &mut Program, n: u8| {
        for i in 1..=n {
            p.op(op::JOIN).u8(i).u8(0).u16(0).u16(0);
        }
    };
    let subscribe_all = |p: &mut Program, n: u8| {
        for i in 1..=n {
            for s in 0..2 {
                p.op(op::SUBSCRIBE).u8(i).u8(s).u8(1).u8(0);
            }
        }
    };

    // A whole session: six receivers, the sender serving its children, a
    // relay lost, a parent gone and a corrupt one reported, then everyone
    // complete and released.
    let mut whole = Program::default();
    whole.raw(&header);
    joins(&mut whole, 6);
    whole.op(op::BEGIN);
    subscribe_all(&mut whole, 6);
    // the same, as it travels
    whole.op(op::MESSAGE).u8(1).msg(&T::Subscribe {
        stripe: 0,
        outline: false,
        have: vec![0],
    });
    for i in 1..=6 {
        for index in 0..4 {
            whole.op(op::ACK).u8(i).u8(index);
        }
    }
    whole
        .op(op::MESSAGE)
        .u8(2)
        .msg(&T::Report { have: vec![2, 1] });
    whole.op(op::REPORT).u8(3).u8(4).u8(4);
    whole.op(op::PEER_LOST).u8(1);
    whole.op(op::LOST).u8(3).u8(0).u8(real).u8(0);
    whole.op(op::LOST).u8(4).u8(1).u8(real).u8(1);
    whole.op(op::MESSAGE).u8(5).msg(&T::Lost {
        stripe: 0,
        parent: node(2),
        reason: LostReason::Gone,
    });
    whole.op(op::TIMER).u8(1).op(op::WAIT).u16(1000);
    for i in [6, 5, 4, 3, 2] {
        whole.op(op::COMPLETE).u8(i);
    }
    whole.op(op::MESSAGE).u8(RECEIVERS + 1).msg(&T::Complete);

    // Slow relays: half the receivers hold everything, the others nothing,
    // report after report.
    let mut slow = Program::default();
    slow.raw(&[0x11, 0x22, 6, 0]);
    joins(&mut slow, 7);
    slow.op(op::BEGIN);
    for round in 0..4u8 {
        for i in 1..=7u8 {
            let held = if round > 0 && i % 2 == 1 { 9 } else { 0 };
            slow.op(op::REPORT).u8(i).u8(held).u8(held);
        }
        slow.op(op::TIMER).u8(1).op(op::WAIT).u16(6000);
    }

    // Late receivers, a measured sender, then a corrupt report about the
    // sender itself: the file changed, the session aborts.
    let mut abort = Program::default();
    abort.raw(&[0x12, 0x00, 3, 0x81]);
    joins(&mut abort, 2);
    abort.op(op::BEGIN);
    abort.op(op::JOIN).u8(3).u8(1).u16(400).u16(800);
    abort.op(op::JOIN).u8(4).u8(0).u16(0).u16(0);
    subscribe_all(&mut abort, 4);
    for i in 1..=4 {
        abort.op(op::LOST).u8(i).u8(0).u8(real).u8(1);
    }
    abort.op(op::COMPLETE).u8(1).op(op::TIMER).u8(1);
    vec![
        ("tree_coordinator", "session".into(), whole.bytes.clone()),
        ("tree_coordinator", "slow".into(), slow.bytes.clone()),
        ("tree_coordinator", "abort".into(), abort.bytes.clone()),
    ]
}

fn localsend() -> Vec<Seed> {
    let info = r#"{"alias":"Pixel 8","version":"2.1","deviceModel":"Google","deviceType":"mobile","fingerprint":"93686AB36DA3622ACC1D0CCBA1A08A847C82F93B0E21815456001CA3847126E2","port":53317,"protocol":"https","download":false,"announce":true}"#;
    let bodies: Vec<(u8, String)> = vec![
        (0, info.to_string()),
        (
            0,
            r#"{"alias":"pc","fingerprint":"AB","peerconnect":"x","announcement":true}"#.into(),
        ),
        (
            1,
            format!(
                r#"{{"info":{info},"files":{{"a":{{"id":"a","fileName":"album/notes.txt","size":11,"fileType":"text/plain","sha256":"{}"}},"b":{{"id":"b","fileName":"album/photo.bin","size":700000,"fileType":"image/jpeg"}}}}}}"#,
                "ab".repeat(32)
            ),
        ),
        (
            1,
            format!(
                r#"{{"info":{info},"files":{{"x":{{"id":"x","fileName":"../../etc/passwd","size":1,"fileType":"text/plain"}}}}}}"#
            ),
        ),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (sel, b))| {
            let mut v = vec![sel];
            v.extend_from_slice(b.as_bytes());
            ("localsend", format!("body-{i}"), v)
        })
        .collect()
}
