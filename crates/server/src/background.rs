//! A server on a thread of its own, for a program that embeds one (the
//! demo): [`Background::start`] runs [`crate::run`] on its own runtime and
//! returns once the listener accepts connections; [`Background::stop`] (or
//! dropping the handle) stops it the way SIGTERM stops `lifeboat serve`.

use crate::error::{Error, Result};
use crate::serve::ServerConfig;
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`Background::start`] waits for the listener.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running server.
pub struct Background {
    listen: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Background {
    /// Starts the server of `config` and waits until it listens.
    pub fn start(config: ServerConfig) -> Result<Background> {
        let listen = config.listen;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lifeboat-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))?;
                runtime.block_on(crate::run(config, async {
                    let _ = stopped.await;
                }))
            })
            .map_err(|e| Error::Internal(format!("starting the server thread: {e}")))?;
        let mut server = Background {
            listen,
            stop: Some(stop),
            thread: Some(thread),
        };
        let since = Instant::now();
        while TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_err() {
            if server.thread.as_ref().is_some_and(|t| t.is_finished()) {
                return Err(server.join().err().unwrap_or_else(|| {
                    Error::Internal(format!("the server on {listen} stopped at once"))
                }));
            }
            if since.elapsed() > READY_WITHIN {
                return Err(Error::Internal(format!(
                    "the server did not listen on {listen} within {READY_WITHIN:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// `https://ADDRESS:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.listen)
    }

    /// Stops the server and returns how its run ended.
    pub fn stop(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Internal("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
