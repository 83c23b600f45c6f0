//! Reason codes: why the pipeline decided what it did. One enum serves the
//! logs and the JSON, so an admin can grep for what a ticket shows.

use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($($variant:ident => $code:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ReasonCode {
            $(#[serde(rename = $code)] $variant,)*
        }

        impl ReasonCode {
            pub fn as_str(self) -> &'static str {
                match self { $(ReasonCode::$variant => $code,)* }
            }

            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant,)*];
        }
    };
}

reasons! {
    RouteHelpdeskAddress => "route.helpdesk_address",
    RouteStaffAddressIgnored => "route.staff_address_ignored",
    RouteExtraRecipient => "route.extra_recipient",
    ParseFailed => "parse.failed",
    ParseNoMessageId => "parse.no_message_id",
    ParseTooLarge => "parse.too_large",
    ParseHtmlOnly => "parse.html_only",
    ProcedureSubjectMatch => "procedure.subject_match",
    ProcedureBodyMatch => "procedure.body_match",
    ProcedureNone => "procedure.none",
    ProcedureQueue => "procedure.queue",
    SectorQueue => "sector.queue",
    SectorKeyword => "sector.keyword",
    SectorKeywordMago => "sector.keyword_mago",
    SectorDefault => "sector.default",
    UrgencySubjectUrgente => "urgency.subject_urgente",
    UrgencySubjectCritico => "urgency.subject_critico",
    UrgencySubjectKeyword => "urgency.subject_keyword",
    UrgencyDefault => "urgency.default",
    ContractBody => "contract.body",
    FollowupInReplyTo => "followup.in_reply_to",
    FollowupReferences => "followup.references",
    FollowupSubjectId => "followup.subject_id",
    FollowupUnknownTicket => "followup.unknown_ticket",
    DuplicateMessageId => "duplicate.message_id",
    CommandClose => "command.close",
    CommandReopen => "command.reopen",
    CommandNoTicket => "command.no_ticket",
    CommandNotRequester => "command.not_requester",
    CommandNotAuthenticated => "command.not_authenticated",
    CommandIllegalTransition => "command.illegal_transition",
    QualityVagueSubject => "quality.vague_subject",
    QualityShortBody => "quality.short_body",
    AutoReplyOutOfOffice => "autoreply.out_of_office",
    ReplySuppressedAutoSubmitted => "reply.suppressed_auto_submitted",
    ReplySuppressedPrecedence => "reply.suppressed_precedence",
    ReplySuppressedList => "reply.suppressed_list",
    ReplySuppressedNullSender => "reply.suppressed_null_sender",
    ReplySuppressedOwnAddress => "reply.suppressed_own_address",
    ReplySuppressedRateLimit => "reply.suppressed_rate_limit",
    ResumeOnReply => "resume.on_reply",
    ForgedHeaderRemoved => "tag.forged_header_removed",
    AuthDmarcPass => "auth.dmarc_pass",
    AuthDmarcFail => "auth.dmarc_fail",
    AuthNone => "auth.none",
    AuthSpfPass => "auth.spf_pass",
    AuthSpfFail => "auth.spf_fail",
    AuthDkimPass => "auth.dkim_pass",
    AuthDkimFail => "auth.dkim_fail",
    AuthTempError => "auth.temperror",
    Shadow => "shadow",
    // issue 18: caps on what one message can make us do, and our own
    // Authentication-Results removed from incoming mail.
    CapHeaderFields => "cap.header_fields",
    CapMimeParts => "cap.mime_parts",
    CapAttachments => "cap.attachments",
    CapReferenceIds => "cap.reference_ids",
    CapClassifyText => "cap.classify_text",
    CapTicketMessages => "cap.ticket_messages",
    CapTicketAttachments => "cap.ticket_attachments",
    ForgedAuthResultsRemoved => "tag.forged_auth_results_removed",
    // issue 17
    ReplyCancelledRefused => "reply.cancelled_refused",
    ReplyCancelledUndelivered => "reply.cancelled_undelivered",
    ReplyCancelledVoid => "reply.cancelled_void",
    ReplyFailedAttempts => "reply.failed_attempts",
    ReplyFailedRelayRefused => "reply.failed_relay_refused",
    TicketVoidRefused => "ticket.void_refused",
    TicketVoidUndelivered => "ticket.void_undelivered",
    TicketRevived => "ticket.revived",
    NoticeSuppressed => "notice.suppressed",
    // issue 16
    AuthFromNotSingle => "auth.from_not_single",
    AuthEnvelopeNotRequester => "auth.envelope_not_requester",
    AuthSignedForOther => "auth.signed_for_other",
    ResumeNotRequester => "resume.not_requester",
    ResumeNotAuthenticated => "resume.not_authenticated",
    ProcedureAlias => "procedure.alias",
    QualityImageAttached => "quality.image_attached",
    ReplySuppressedReport => "reply.suppressed_report",
    ReplySuppressedDmarcReport => "reply.suppressed_dmarc_report",
    ReplySuppressedRobotSender => "reply.suppressed_robot_sender",
    ReplySuppressedSpfFail => "reply.suppressed_spf_fail",
    // What an SMTP refusal (4xx or 5xx, ours or the next hop's) was, by
    // its enhanced status code (RFC 3463): the `reason` of its log line.
    RefusedProtocol => "refused.protocol",
    RefusedAddress => "refused.address",
    RefusedMailbox => "refused.mailbox",
    RefusedSize => "refused.size",
    RefusedRecipients => "refused.recipients",
    RefusedContent => "refused.content",
    RefusedPolicy => "refused.policy",
    RefusedTimeout => "refused.timeout",
    RefusedBusy => "refused.busy",
    RefusedLocal => "refused.local",
    RefusedNetwork => "refused.network",
    RefusedOther => "refused.other",
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
