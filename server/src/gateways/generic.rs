//! The `generic` adapter: a GET to a URL template in which `{to}` and `{text}` are replaced by
//! the URL-encoded recipient and text, e.g. `https://gateway/send?to={to}&text={text}&key=…`.
//! Success is any 2xx: a GET API that reports refusals inside a 200 needs its own adapter.

use async_trait::async_trait;

use crate::replies::{ReplySender, SendError};

pub struct UrlTemplate {
    template: String,
    client: reqwest::Client,
}

impl UrlTemplate {
    pub fn new(template: String) -> anyhow::Result<Self> {
        if !template.contains("{to}") || !template.contains("{text}") {
            anyhow::bail!("the SMS reply URL template must contain {{to}} and {{text}}");
        }
        Ok(Self { template, client: super::client()? })
    }

    fn url(&self, to: &str, text: &str) -> String {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        self.template.replace("{to}", &encode(to)).replace("{text}", &encode(text))
    }
}

#[async_trait]
impl ReplySender for UrlTemplate {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        let response = self.client.get(self.url(to, text)).send().await?;
        if response.status().is_success() { Ok(None) } else { Err(SendError::Refused(response.status())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_gets_encoded_values() {
        let sender = UrlTemplate::new("http://gw/send?to={to}&text={text}".into()).expect("valid template");
        assert_eq!(sender.url("+98912", "کد ۱ & 2"), "http://gw/send?to=%2B98912&text=%DA%A9%D8%AF+%DB%B1+%26+2");
        assert!(UrlTemplate::new("http://gw/send".into()).is_err());
    }

    /// A gateway that cannot be reached: what goes to the log names neither its key nor the
    /// recipient nor the text.
    #[tokio::test]
    async fn a_failed_send_keeps_the_secrets_out_of_the_log() {
        let sender = UrlTemplate::new("http://127.0.0.1:1/send?key=SECRET-KEY&to={to}&text={text}".into())
            .expect("valid template");
        let error = sender.send("09121234567", "hello").await.expect_err("nothing listens on port 1");
        let logged = format!("{error} {error:?}");
        assert!(
            !logged.contains("SECRET-KEY") && !logged.contains("09121234567") && !logged.contains("hello"),
            "{logged}"
        );
    }
}
