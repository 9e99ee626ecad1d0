//! Sending replies to SMS senders: a small [`ReplySender`] trait with a logging sender (the
//! default) and an HTTP sender configured by a URL template, so a real gateway can be plugged in.
//!
//! Sending happens after the declaration is stored and never decides its fate: a failed send is
//! retried with backoff a few times, then logged. The webhook's answer carries the same text, for
//! gateways that reply from it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// Why a reply could not be handed to the gateway. Never names the URL: a gateway's URL carries
/// its API key, the recipient and the text, and this goes to the logs.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the gateway could not be reached: {0}")]
    Unreachable(reqwest::Error),
    #[error("the gateway answered {0}")]
    Refused(reqwest::StatusCode),
}

impl From<reqwest::Error> for SendError {
    fn from(e: reqwest::Error) -> Self {
        Self::Unreachable(e.without_url())
    }
}

/// A phone number as the logs may show it: the last four digits.
pub fn masked(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let shown: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("…{shown}")
}

#[async_trait]
pub trait ReplySender: Send + Sync + 'static {
    async fn send(&self, to: &str, text: &str) -> Result<(), SendError>;
}

/// Writes replies to the log; for a gateway that replies from the webhook's answer.
pub struct LogSender;

#[async_trait]
impl ReplySender for LogSender {
    async fn send(&self, to: &str, text: &str) -> Result<(), SendError> {
        tracing::info!(to, text, "sms reply");
        Ok(())
    }
}

/// Sends each reply with a GET to a URL template in which `{to}` and `{text}` are replaced by
/// the URL-encoded recipient and text, e.g. `https://gateway/send?to={to}&text={text}&key=…`.
pub struct HttpSender {
    template: String,
    client: reqwest::Client,
}

impl HttpSender {
    pub fn new(template: String) -> anyhow::Result<Self> {
        if !template.contains("{to}") || !template.contains("{text}") {
            anyhow::bail!("the SMS reply URL template must contain {{to}} and {{text}}");
        }
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Self { template, client })
    }

    fn url(&self, to: &str, text: &str) -> String {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        self.template.replace("{to}", &encode(to)).replace("{text}", &encode(text))
    }
}

#[async_trait]
impl ReplySender for HttpSender {
    async fn send(&self, to: &str, text: &str) -> Result<(), SendError> {
        let response = self.client.get(self.url(to, text)).send().await?;
        if response.status().is_success() { Ok(()) } else { Err(SendError::Refused(response.status())) }
    }
}

/// How often and how patiently a reply is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 5, first_delay: Duration::from_secs(2) }
    }
}

/// Sends `text` to `to` in the background, retrying with doubling delays.
pub fn send_in_background(sender: Arc<dyn ReplySender>, retry: Retry, to: String, text: String) {
    tokio::spawn(async move {
        let mut delay = retry.first_delay;
        for attempt in 1..=retry.attempts.max(1) {
            match sender.send(&to, &text).await {
                Ok(()) => return,
                Err(e) if attempt < retry.attempts => {
                    tracing::warn!(error = %e, attempt, to = %masked(&to), "sms reply not sent; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => tracing::error!(error = %e, to = %masked(&to), "sms reply not sent; giving up"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_gets_encoded_values() {
        let sender = HttpSender::new("http://gw/send?to={to}&text={text}".into()).expect("valid template");
        assert_eq!(sender.url("+98912", "کد ۱ & 2"), "http://gw/send?to=%2B98912&text=%DA%A9%D8%AF+%DB%B1+%26+2");
        assert!(HttpSender::new("http://gw/send".into()).is_err());
    }

    /// A gateway that cannot be reached: what goes to the log names neither its key nor the
    /// recipient nor the text.
    #[tokio::test]
    async fn a_failed_send_keeps_the_secrets_out_of_the_log() {
        let sender = HttpSender::new("http://127.0.0.1:1/send?key=SECRET-KEY&to={to}&text={text}".into())
            .expect("valid template");
        let error = sender.send("09121234567", "hello").await.expect_err("nothing listens on port 1");
        let logged = format!("{error} {error:?}");
        assert!(
            !logged.contains("SECRET-KEY") && !logged.contains("09121234567") && !logged.contains("hello"),
            "{logged}"
        );
        assert_eq!(masked("+98 912 123 4567"), "…4567");
    }
}
