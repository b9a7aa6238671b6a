//! ICE-TCP (RFC 6544) for browsers whose network blocks UDP: a listener on the media port accepts TCP connections,
//! each carrying RFC 4571 frames (a two-byte length, then one STUN, DTLS or SRTP packet). Reader and writer threads
//! per connection turn the stream into events for the media loop, which stays the only owner of the SFU.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// Most TCP media connections at once; beyond it new ones are closed at once (each costs two threads).
const MAX_CONNECTIONS: usize = 512;
/// ICE consent checks arrive every few seconds; a connection silent this long is dead or never was ICE.
const IDLE: Duration = Duration::from_secs(30);
/// Frames queued for a slow connection before new ones are dropped (media tolerates loss, not a stalled loop).
const QUEUE: usize = 1024;

/// What the connections tell the media loop.
#[derive(Debug)]
pub enum TcpEvent {
    /// A connection from `peer`; frames for it go to the sender.
    Connected(SocketAddr, mpsc::SyncSender<Vec<u8>>),
    /// One frame from `peer`.
    Frame(SocketAddr, Vec<u8>),
    /// The connection from `peer` closed.
    Closed(SocketAddr),
}

/// Bind the TCP media listener and accept connections on a thread of its own.
pub fn listen(addr: SocketAddr, events: mpsc::Sender<TcpEvent>) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("vbank-ice-tcp".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                log::warn!("ICE-TCP connection refused: {MAX_CONNECTIONS} already open");
                continue;
            }
            open.fetch_add(1, Ordering::Relaxed);
            let (events, open) = (events.clone(), open.clone());
            if let Err(e) = connection(stream, events, open.clone()) {
                open.fetch_sub(1, Ordering::Relaxed);
                log::warn!("ICE-TCP connection dropped: {e}");
            }
        }
    })?;
    Ok(())
}

fn connection(stream: TcpStream, events: mpsc::Sender<TcpEvent>, open: Arc<AtomicUsize>) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
    std::thread::Builder::new().name("vbank-ice-tcp-w".into()).spawn(move || {
        for frame in rx {
            let Ok(len) = u16::try_from(frame.len()) else { continue };
            if writer.write_all(&len.to_be_bytes()).and_then(|_| writer.write_all(&frame)).is_err() {
                break;
            }
        }
        let _ = writer.shutdown(std::net::Shutdown::Both);
    })?;
    let mut reader = stream;
    std::thread::Builder::new().name("vbank-ice-tcp-r".into()).spawn(move || {
        let _ = events.send(TcpEvent::Connected(peer, tx));
        while let Ok(frame) = read_frame(&mut reader) {
            if events.send(TcpEvent::Frame(peer, frame)).is_err() {
                break;
            }
        }
        let _ = reader.shutdown(std::net::Shutdown::Both);
        let _ = events.send(TcpEvent::Closed(peer));
        open.fetch_sub(1, Ordering::Relaxed);
    })?;
    Ok(())
}

/// One RFC 4571 frame. An empty frame is legal and skipped.
pub fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    loop {
        let mut len = [0u8; 2];
        r.read_exact(&mut len)?;
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 {
            continue;
        }
        let mut frame = vec![0u8; len];
        r.read_exact(&mut frame)?;
        return Ok(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_on_their_length_prefix() {
        let bytes = [0u8, 3, 1, 2, 3, 0, 0, 0, 1, 9, 0, 5, 1];
        let mut r = &bytes[..];
        assert_eq!(read_frame(&mut r).unwrap(), vec![1, 2, 3]);
        assert_eq!(read_frame(&mut r).unwrap(), vec![9], "an empty frame is skipped");
        let err = read_frame(&mut r).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "a truncated frame ends the connection");
    }

    #[test]
    fn a_connection_delivers_frames_and_takes_replies() {
        let (tx, rx) = mpsc::channel();
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        listen(addr, tx).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&[0, 2, 7, 8]).unwrap();
        let TcpEvent::Connected(peer, reply) = rx.recv_timeout(Duration::from_secs(5)).unwrap() else {
            panic!("expected Connected")
        };
        assert_eq!(peer, client.local_addr().unwrap());
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            TcpEvent::Frame(p, f) => assert_eq!((p, f), (peer, vec![7, 8])),
            e => panic!("expected a frame, got {e:?}"),
        }
        reply.send(vec![4, 5, 6]).unwrap();
        assert_eq!(read_frame(&mut client).unwrap(), vec![4, 5, 6]);
        drop(client);
        assert!(matches!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), TcpEvent::Closed(p) if p == peer));
    }
}
