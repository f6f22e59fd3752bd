//! The request shapes of `SendEmail` and `SendBulkEmail` (SES v2 field
//! names), which the classic query API's actions are mapped to as well.

use serde::Deserialize;

use super::content::{Destination, EmailContent, Header, ListManagementOptions, Tag, Template};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendEmailRequest {
    pub from_email_address: Option<String>,
    pub destination: Option<Destination>,
    #[serde(default)]
    pub reply_to_addresses: Vec<String>,
    pub content: EmailContent,
    #[serde(default)]
    pub email_tags: Vec<Tag>,
    pub configuration_set_name: Option<String>,
    pub list_management_options: Option<ListManagementOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplacementTemplate {
    pub replacement_template_data: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplacementContent {
    pub replacement_template: Option<ReplacementTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BulkEntry {
    pub destination: Destination,
    #[serde(default)]
    pub replacement_tags: Vec<Tag>,
    pub replacement_email_content: Option<ReplacementContent>,
    #[serde(default)]
    pub replacement_headers: Vec<Header>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BulkContent {
    pub template: Option<Template>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendBulkRequest {
    pub from_email_address: Option<String>,
    #[serde(default)]
    pub reply_to_addresses: Vec<String>,
    #[serde(default)]
    pub default_email_tags: Vec<Tag>,
    pub default_content: BulkContent,
    pub bulk_email_entries: Vec<BulkEntry>,
    pub configuration_set_name: Option<String>,
}
