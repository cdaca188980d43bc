//! A TCP proxy on loopback that can be switched off and on, to make a real endpoint go away
//! mid-test: while down it closes every connection it has and refuses new ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};

/// A switchable proxy to `target`.
#[derive(Debug)]
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, to give clients instead of the target.
    pub url: String,
    down: Arc<AtomicBool>,
    /// Bumped on every switch, so connections from before a switch end.
    epoch: Arc<AtomicU64>,
}

impl Proxy {
    /// Start proxying to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let down = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (d, e) = (down.clone(), epoch.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let (d, e) = (d.clone(), e.clone());
                let started = e.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else { return };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let cut = async {
                        while !d.load(Ordering::SeqCst) && e.load(Ordering::SeqCst) == started {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = cut => {} }
                });
            }
        });
        Proxy { url, down, epoch }
    }

    /// Stop answering (and cut open connections) or come back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}
