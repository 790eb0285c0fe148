"""deliver.classify: SMTP replies as Gmail, Yahoo, Outlook/Exchange, iCloud, Postfix, Exim,
Sendmail and qmail phrase them, read into Sisimai's reason vocabulary."""

from __future__ import annotations

import re
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deliver.classify as classify
from deliver._rule_table import RuleTable
from deliver.classify import (
    HARD_REASONS,
    Reason,
    ReplyClass,
    classify_reply,
    retry_hint,
    split_enhanced,
)

R = Reason

GMAIL_NO_SUCH_USER = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
    "550-5.1.1 double-checking the recipient's email address for typos or\n"
    "550-5.1.1 unnecessary spaces. For more information, go to\n"
    "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser "
    "d2e1a72fcca58-7a1b2c3d4e5si123456b3a.250 - gsmtp"
)

#: (code, text, reason, hard): the code as the server sent it, the text as aiosmtplib
#: hands it over (lines joined with "\n", the reply code repeated or not)
REPLIES = [
    # --- Gmail -------------------------------------------------------------------
    pytest.param(550, GMAIL_NO_SUCH_USER, R.USERUNKNOWN, True, id="gmail-nosuchuser-multiline"),
    pytest.param(
        550,
        "5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "5.1.1 double-checking the recipient's email address for typos or\n"
        "5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser - gsmtp",
        R.USERUNKNOWN,
        True,
        id="gmail-nosuchuser-lines-without-code",
    ),
    pytest.param(
        550,
        "5.2.1 The email account that you tried to reach is inactive. For more information,"
        " go to https://support.google.com/mail/?p=DisabledUser a1b2c3 - gsmtp",
        R.SUSPEND,
        False,
        id="gmail-inactive",
    ),
    pytest.param(
        452,
        "4.2.2 The recipient's inbox is out of storage space. Please direct the recipient to\n"
        "4.2.2  https://support.google.com/mail/?p=OverQuotaTemp a1b2c3 - gsmtp",
        R.MAILBOXFULL,
        False,
        id="gmail-overquota-temp",
    ),
    pytest.param(
        552,
        "5.2.2 The email account that you tried to reach is over quota and inactive. Please"
        " direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
        R.MAILBOXFULL,
        False,
        id="gmail-overquota-perm",
    ),
    pytest.param(
        450,
        "4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend"
        " your message at a later time. If the user is able to receive mail at that time, your"
        " message will be delivered. https://support.google.com/mail/?p=ReceivingRate - gsmtp",
        R.SPEEDING,
        False,
        id="gmail-receiving-too-quickly",
    ),
    pytest.param(
        421,
        "4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your"
        " IP address. To protect our users from spam, mail sent from your IP address has been"
        " temporarily rate limited. For more information, go to\n"
        "4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp",
        R.SPEEDING,
        False,
        id="gmail-unusual-rate",
    ),
    pytest.param(
        550,
        "550-5.7.1 [203.0.113.5] Our system has detected that this message is likely\n"
        "550-5.7.1 unsolicited mail. To reduce the amount of spam sent to Gmail, this message\n"
        "550-5.7.1 has been blocked. For more information, go to\n"
        "550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp",
        R.SPAMDETECTED,
        False,
        id="gmail-likely-unsolicited",
    ),
    pytest.param(
        550,
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail\n"
        "550-5.7.26 requires all senders to authenticate with either SPF or DKIM.\n"
        "550-5.7.26\n"
        "550-5.7.26  Authentication results:\n"
        "550-5.7.26  DKIM = did not pass\n"
        "550-5.7.26  SPF [example.org] with ip: [203.0.113.5] = did not pass\n"
        "550 5.7.26  https://support.google.com/mail/answer/81126#authentication - gsmtp",
        R.AUTHFAILURE,
        False,
        id="gmail-unauthenticated",
    ),
    pytest.param(
        550,
        "5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC"
        " policy. Please contact the administrator of example.org domain if this was a"
        " legitimate mail. https://support.google.com/mail/?p=DmarcRejection - gsmtp",
        R.AUTHFAILURE,
        False,
        id="gmail-dmarc-reject",
    ),
    pytest.param(
        421,
        "4.7.0 [203.0.113.5      15] Our system has detected that this message is suspicious"
        " due to the very low reputation of the sending IP address. To protect our users from"
        " spam, mail sent from your IP address has been temporarily rate limited."
        " https://support.google.com/mail/answer/188131 - gsmtp",
        R.BADREPUTATION,
        False,
        id="gmail-low-reputation",
    ),
    pytest.param(
        550,
        "5.7.25 [203.0.113.5] The IP address sending this message does not have a PTR record"
        " setup, or the corresponding forward DNS entry does not point to the sending IP. As a"
        " policy, Gmail does not accept messages from IPs with missing PTR records. - gsmtp",
        R.REQUIREPTR,
        False,
        id="gmail-ptr",
    ),
    pytest.param(
        421,
        "4.7.23 The sending IP address for this message doesn't have a PTR record, or the PTR"
        " record's forward DNS entry doesn't match the sending IP address. To protect users"
        " from spam, your email has been temporarily rate limited. - gsmtp",
        R.REQUIREPTR,
        False,
        id="gmail-4.7.23-is-ptr-not-spf",
    ),
    pytest.param(
        421,
        "4.7.29 Your email has been rate limited because this message wasn't sent over a TLS"
        " connection. Gmail requires all bulk email senders to use TLS/SSL for SMTP"
        " connections. - gsmtp",
        R.FAILEDSTARTTLS,
        False,
        id="gmail-4.7.29-is-tls-not-arc",
    ),
    pytest.param(
        552,
        "5.3.4 Your message exceeded Google's message size limits. For more information, go"
        " to https://support.google.com/mail/?p=MaxSizeError - gsmtp",
        R.MESGTOOBIG,
        False,
        id="gmail-too-big",
    ),
    pytest.param(
        452,
        "4.5.3 Your message has too many recipients. For more information regarding Google's"
        " sending limits, go to https://support.google.com/mail/answer/6592 - gsmtp",
        R.TOOMANYCONN,
        False,
        id="gmail-too-many-recipients",
    ),
    pytest.param(
        421,
        "4.7.0 TLS required for RCPT domain, closing connection. For more information, go to"
        " https://support.google.com/mail/answer/6330403 - gsmtp",
        R.FAILEDSTARTTLS,
        False,
        id="gmail-tls-required",
    ),
    pytest.param(
        530,
        "5.7.0 Must issue a STARTTLS command first. a1b2c3 - gsmtp",
        R.FAILEDSTARTTLS,
        False,
        id="gmail-starttls-first",
    ),
    pytest.param(
        550,
        "5.7.1 Messages missing a valid address in From: header, or having no From: header,"
        " are not accepted. https://support.google.com/mail/?p=RfcMessageNonCompliant - gsmtp",
        R.NOTCOMPLIANTRFC,
        False,
        id="gmail-missing-from",
    ),
    pytest.param(
        421,
        "4.3.0 Temporary System Problem.  Try again later (10). a1b2c3 - gsmtp",
        R.SYSTEMERROR,
        False,
        id="gmail-temporary-system-problem",
    ),
    pytest.param(
        550,
        "5.7.1 The user or domain that you are sending to (or from) has a policy that"
        " prohibited the mail that you sent. Please contact your domain administrator for"
        " further details. https://support.google.com/a/answer/172179 - gsmtp",
        R.POLICYVIOLATION,
        False,
        id="gmail-recipient-policy",
    ),
    pytest.param(
        552,
        "5.7.0 This message was blocked because its content presents a potential security"
        " issue. Please visit https://support.google.com/mail/?p=BlockedMessage to review our"
        " message content and attachment content guidelines. - gsmtp",
        R.POLICYVIOLATION,
        False,
        id="gmail-blocked-content",
    ),
    # --- Yahoo / AOL -------------------------------------------------------------
    pytest.param(
        421,
        "4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected"
        " volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        R.BADREPUTATION,
        False,
        id="yahoo-tss04",
    ),
    pytest.param(
        553,
        "5.7.1 [BL21] Connections will not be accepted from 203.0.113.5, because the ip is in"
        " Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        R.BLOCKED,
        False,
        id="yahoo-bl21-spamhaus",
    ),
    pytest.param(
        554,
        "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com)"
        " [0] - mta4321.mail.bf1.yahoo.com",
        R.USERUNKNOWN,
        True,
        id="yahoo-dd-no-account",
    ),
    pytest.param(
        554,
        "delivery error: dd Sorry your message to someone@aol.com cannot be delivered. This"
        " mailbox is disabled (554.30). - mta1.mail.gq1.yahoo.com",
        R.SUSPEND,
        False,
        id="aol-mailbox-disabled",
    ),
    pytest.param(
        552,
        "1 Requested mail action aborted, mailbox not found",
        R.USERUNKNOWN,
        True,
        id="yahoo-mailbox-not-found",
    ),
    pytest.param(
        554,
        "Message not allowed - [PH01] Email not accepted for policy reasons. Please visit"
        " https://postmaster.yahooinc.com/error-codes",
        R.POLICYVIOLATION,
        False,
        id="yahoo-ph01",
    ),
    pytest.param(
        550,
        "5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo"
        " requires all senders to authenticate with either SPF or DKIM.",
        R.AUTHFAILURE,
        False,
        id="yahoo-unauthenticated-5.7.9",
    ),
    pytest.param(
        421,
        "Max message per connection reached, closing transmission channel",
        R.TOOMANYCONN,
        False,
        id="yahoo-max-messages-per-connection",
    ),
    pytest.param(
        553,
        "5.7.2 [TSS09] All messages from 203.0.113.5 will be permanently deferred; Retrying"
        " will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
        R.BLOCKED,
        False,
        id="yahoo-tss09",
    ),
    # --- Outlook.com / Exchange Online / Exchange Server --------------------------
    pytest.param(
        550,
        "5.5.0 Requested action not taken: mailbox unavailable (S2017062302)."
        " [BN8NAM12FT055.eop-nam12.prod.protection.outlook.com 2024-05-01T10:00:00.000Z"
        " 08DC6A1B2C3D4E5F]",
        R.USERUNKNOWN,
        True,
        id="outlook-mailbox-unavailable",
    ),
    pytest.param(
        550,
        "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient someone@contoso.com not found by"
        " SMTP address lookup",
        R.USERUNKNOWN,
        True,
        id="exchange-online-5.1.10-is-not-null-mx",
    ),
    pytest.param(
        550,
        "5.4.1 Recipient address rejected: Access denied. For more information see"
        " https://aka.ms/EXOSmtpErrors [AM4PEPF00027A5F.eurprd04.prod.outlook.com]",
        R.USERUNKNOWN,
        True,
        id="exchange-online-dbeb",
    ),
    pytest.param(
        421,
        "4.7.0 RP-003 The mail server IP connecting to Outlook.com server has exceeded the"
        " connection limit allowed. Please try again later.",
        R.TOOMANYCONN,
        False,
        id="outlook-rp003-connection-limit",
    ),
    pytest.param(
        421,
        "RP-001 (BAY004-MC1F7) Unfortunately, some messages from 203.0.113.5 weren't sent."
        " Please try again. We have limits for how many messages can be sent per hour and per"
        " day. You can also refer to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        R.SPEEDING,
        False,
        id="outlook-rp001-hourly-limits",
    ),
    pytest.param(
        421,
        "RP-001 The mail server IP connecting to Outlook.com server has exceeded the rate"
        " limit allowed. Reason for rate limitation is related to IP/domain reputation"
        " problems.",
        R.BADREPUTATION,
        False,
        id="outlook-rp001-reputation",
    ),
    pytest.param(
        451,
        "4.7.650 The mail server [203.0.113.5] has been temporarily rate limited due to IP"
        " reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775)"
        " [Name=Protocol Filter Agent][AGT=PFA][MxId=11BD5B61254CB1FC]"
        " [DB5PEPF00014B9B.eurprd02.prod.outlook.com 2024-05-14T15:49:33.598Z]",
        R.BADREPUTATION,
        False,
        id="outlook-4.7.650",
    ),
    pytest.param(
        550,
        "5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent. Please contact your"
        " Internet service provider since part of their network is on our block list (S3150)."
        " You can also refer your provider to"
        " http://mail.live.com/mail/troubleshooting.aspx#errors.",
        R.BLOCKED,
        False,
        id="outlook-s3150",
    ),
    pytest.param(
        550,
        "5.7.1 Service unavailable, Client host [203.0.113.5] blocked using Spamhaus. To"
        " request removal from this list see https://www.spamhaus.org/query/ip/203.0.113.5"
        " (AS3130). [BN1NAM02FT054.eop-nam02.prod.protection.outlook.com]",
        R.BLOCKED,
        False,
        id="exchange-online-spamhaus",
    ),
    pytest.param(
        550,
        "5.7.606 Access denied, banned sending IP [203.0.113.5]. To request removal from this"
        " list please visit https://sender.office.com/ and follow the directions.",
        R.BLOCKED,
        False,
        id="exchange-online-banned-ip",
    ),
    pytest.param(
        550,
        "5.7.515 Access denied, sending domain EXAMPLE.ORG doesn't meet the required"
        " authentication level. The sender's domain in the 5322.From address doesn't meet the"
        " authentication requirements defined for the sender.",
        R.AUTHFAILURE,
        False,
        id="outlook-5.7.515",
    ),
    pytest.param(
        550,
        "5.7.509 Access denied, sending domain example.org does not pass DMARC verification"
        " and has a DMARC policy of reject.",
        R.AUTHFAILURE,
        False,
        id="exchange-online-dmarc",
    ),
    pytest.param(
        550,
        "5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
        R.NORELAYING,
        False,
        id="exchange-unable-to-relay",
    ),
    pytest.param(
        554,
        "5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
        "MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent"
        " exception with message [BeginDiagnosticData]",
        R.MAILBOXFULL,
        False,
        id="exchange-storedrv-quota",
    ),
    pytest.param(
        452,
        "4.3.1 Insufficient system resources",
        R.SYSTEMFULL,
        False,
        id="exchange-insufficient-resources",
    ),
    pytest.param(
        550,
        "5.1.1 RESOLVER.ADR.RecipNotFound; not found",
        R.USERUNKNOWN,
        True,
        id="exchange-recipnotfound",
    ),
    pytest.param(
        530,
        "5.7.1 Client was not authenticated",
        R.SECURITYERROR,
        False,
        id="exchange-client-not-authenticated",
    ),
    pytest.param(
        454,
        "4.7.0 TLS not available due to local problem",
        R.FAILEDSTARTTLS,
        False,
        id="exchange-tls-not-available",
    ),
    pytest.param(
        451,
        "4.7.500 Server busy. Please try again later from [203.0.113.5]. (AS761)",
        R.SYSTEMERROR,
        False,
        id="outlook-server-busy",
    ),
    pytest.param(
        550,
        "5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, which"
        " cannot be sent via DATA and receiving system does not support BDAT",
        R.CONTENTERROR,
        False,
        id="exchange-bare-linefeeds",
    ),
    # --- Apple iCloud ------------------------------------------------------------
    pytest.param(
        550,
        "5.1.1 <someone@icloud.com>: user does not exist",
        R.USERUNKNOWN,
        True,
        id="icloud-user-does-not-exist",
    ),
    pytest.param(
        552,
        "5.2.2 <someone@icloud.com>: user is over quota",
        R.MAILBOXFULL,
        False,
        id="icloud-over-quota",
    ),
    pytest.param(
        554,
        "5.7.1 [HME1] This message was blocked for failing both SPF and DKIM authentication"
        " checks. See https://support.apple.com/en-us/HT204137 for mailing best practices",
        R.AUTHFAILURE,
        False,
        id="icloud-hme1",
    ),
    pytest.param(
        421,
        "4.7.1 Messages to someone@icloud.com deferred due to excessive volume. Try again"
        " later - https://support.apple.com/en-us/HT204137",
        R.SPEEDING,
        False,
        id="icloud-excessive-volume",
    ),
    pytest.param(
        550,
        "5.1.6 recipient no longer on server: someone@icloud.com",
        R.HASMOVED,
        True,
        id="icloud-no-longer-on-server",
    ),
    pytest.param(
        550,
        "5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=203.0.113.5",
        R.BLOCKED,
        False,
        id="icloud-proofpoint-dnsbl",
    ),
    pytest.param(
        550,
        "5.7.1 [CS01] Message rejected due to local policy. Please visit"
        " https://support.apple.com/en-us/HT204137",
        R.POLICYVIOLATION,
        False,
        id="icloud-cs01",
    ),
    # --- Postfix -----------------------------------------------------------------
    pytest.param(
        550,
        "5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in virtual"
        " mailbox table",
        R.USERUNKNOWN,
        True,
        id="postfix-virtual-user-unknown",
    ),
    pytest.param(
        550,
        "5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local"
        " recipient table",
        R.USERUNKNOWN,
        True,
        id="postfix-local-user-unknown",
    ),
    pytest.param(
        554,
        "5.7.1 <someone@example.net>: Relay access denied",
        R.NORELAYING,
        False,
        id="postfix-relay-access-denied",
    ),
    pytest.param(
        554,
        "5.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org;"
        " https://www.spamhaus.org/query/ip/203.0.113.5",
        R.BLOCKED,
        False,
        id="postfix-rbl",
    ),
    pytest.param(
        450,
        "4.7.1 Client host rejected: cannot find your hostname, [203.0.113.5]",
        R.REQUIREPTR,
        False,
        id="postfix-reject-unknown-client",
    ),
    pytest.param(
        550,
        "5.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.5]",
        R.REQUIREPTR,
        False,
        id="postfix-reject-unknown-reverse-client",
    ),
    pytest.param(
        552,
        "5.3.4 Message size exceeds fixed limit",
        R.MESGTOOBIG,
        False,
        id="postfix-message-size",
    ),
    pytest.param(
        450,
        "4.2.0 <someone@example.net>: Recipient address rejected: Greylisted, see"
        " https://postgrey.schweikert.ch/help/example.net.html",
        R.POLICYVIOLATION,
        False,
        id="postgrey",
    ),
    pytest.param(
        452,
        "4.3.1 Insufficient system storage",
        R.SYSTEMFULL,
        False,
        id="postfix-insufficient-storage",
    ),
    pytest.param(
        450,
        "4.1.8 <bounce@example.org>: Sender address rejected: Domain not found",
        R.REJECTED,
        False,
        id="postfix-sender-domain-not-found",
    ),
    pytest.param(
        550,
        "5.1.0 <bounce@example.org>: Sender address rejected: User unknown in virtual"
        " mailbox table",
        R.REJECTED,
        False,
        id="postfix-sender-unknown-is-not-recipient-unknown",
    ),
    pytest.param(
        504,
        "5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
        R.BLOCKED,
        False,
        id="postfix-helo-rejected",
    ),
    pytest.param(
        451,
        "4.3.0 Error: queue file write error",
        R.SYSTEMERROR,
        False,
        id="postfix-queue-file-write-error",
    ),
    pytest.param(
        550,
        "5.4.4 Host or domain name not found. Name service error for name=example.invalid"
        " type=MX: Host not found",
        R.HOSTUNKNOWN,
        True,
        id="postfix-host-not-found",
    ),
    pytest.param(
        450,
        "4.4.3 Host or domain name not found. Name service error for name=example.net"
        " type=MX: Host not found, try again",
        R.NETWORKERROR,
        False,
        id="postfix-dns-try-again",
    ),
    # --- Exim --------------------------------------------------------------------
    pytest.param(550, "Unrouteable address", R.HOSTUNKNOWN, True, id="exim-unrouteable"),
    pytest.param(
        550,
        "Verification failed for <bounce@example.org>\nUnrouteable address\nSender verify failed",
        R.REJECTED,
        False,
        id="exim-sender-verify-multiline",
    ),
    pytest.param(550, "Administrative prohibition", R.REJECTED, False, id="exim-acl-deny"),
    pytest.param(
        552,
        "Message size exceeds maximum permitted",
        R.MESGTOOBIG,
        False,
        id="exim-message-size",
    ),
    pytest.param(
        550,
        "rejected because 203.0.113.5 is in a black list at zen.spamhaus.org",
        R.BLOCKED,
        False,
        id="exim-black-list",
    ),
    pytest.param(
        451,
        "Temporary local problem - please try later",
        R.SYSTEMERROR,
        False,
        id="exim-temporary-local-problem",
    ),
    pytest.param(
        550,
        "The mail server detected your message as spam and has prevented delivery.",
        R.SPAMDETECTED,
        False,
        id="exim-cpanel-spamassassin",
    ),
    pytest.param(
        550,
        "Rejected: SpamAssassin score 9.3 exceeds the threshold",
        R.SPAMDETECTED,
        False,
        id="exim-spamassassin-score",
    ),
    pytest.param(
        550,
        "This message contains a virus (Win.Test.EICAR_HDB-1) and has been rejected",
        R.VIRUSDETECTED,
        False,
        id="exim-clamav",
    ),
    # --- Sendmail ----------------------------------------------------------------
    pytest.param(
        550,
        "5.1.1 <nobody@example.net>... User unknown",
        R.USERUNKNOWN,
        True,
        id="sendmail-user-unknown",
    ),
    pytest.param(
        553,
        "5.1.8 <bounce@nonexistent.invalid>... Domain of sender address"
        " bounce@nonexistent.invalid does not exist",
        R.REJECTED,
        False,
        id="sendmail-sender-domain",
    ),
    pytest.param(
        552,
        "5.2.2 <someone@example.net>... Mailbox full",
        R.MAILBOXFULL,
        False,
        id="sendmail-mailbox-full",
    ),
    pytest.param(
        421,
        "4.3.2 mx.example.net Too many SMTP sessions for this host",
        R.TOOMANYCONN,
        False,
        id="sendmail-too-many-sessions",
    ),
    pytest.param(
        550,
        "5.0.0 <nobody@example.net>... Host unknown (Name server: example.net: host not found)",
        R.HOSTUNKNOWN,
        True,
        id="sendmail-host-unknown",
    ),
    # --- qmail -------------------------------------------------------------------
    pytest.param(
        553,
        "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        R.NORELAYING,
        False,
        id="qmail-rcpthosts",
    ),
    pytest.param(
        550,
        "sorry, no mailbox here by that name. (#5.1.1)",
        R.USERUNKNOWN,
        True,
        id="qmail-no-mailbox",
    ),
    pytest.param(
        552,
        "sorry, that message size exceeds my databytes limit (#5.3.4)",
        R.MESGTOOBIG,
        False,
        id="qmail-databytes",
    ),
    pytest.param(
        550,
        "5.4.310 DNS domain example.invalid does not exist [Message=InfoDomainNonexistent]",
        R.HOSTUNKNOWN,
        True,
        id="exchange-online-dns-domain",
    ),
    pytest.param(
        421,
        "4.7.0 RP-003 The mail server IP connecting to Outlook.com server has exceeded the"
        " connection limit allowed. Reason for limitation is related to IP/domain reputation"
        " problems.",
        R.BADREPUTATION,
        False,
        id="outlook-rp003-reputation",
    ),
    # --- generic, RFC defaults, without enhanced codes -----------------------------
    pytest.param(
        550,
        "5.7.1 <someone@example.net>... is not a valid mailbox",
        R.USERUNKNOWN,
        True,
        id="text-beats-generic-5.7.1",
    ),
    pytest.param(
        550,
        "Requested action not taken: mailbox unavailable",
        R.USERUNKNOWN,
        True,
        id="rfc5321-550-default-text",
    ),
    pytest.param(
        550,
        "5.7.1 Message rejected as spam by Content Filtering.",
        R.SPAMDETECTED,
        False,
        id="exchange-content-filter",
    ),
    pytest.param(
        554,
        "5.7.1 The message was rejected because it contains prohibited virus or spam content",
        R.VIRUSDETECTED,
        False,
        id="virus-or-spam",
    ),
    pytest.param(550, "Account disabled", R.SUSPEND, False, id="account-disabled"),
    pytest.param(
        550,
        "5.2.1 <someone@example.net>: Recipient account suspended",
        R.SUSPEND,
        False,
        id="account-suspended",
    ),
    pytest.param(
        553,
        "Requested action not taken: mailbox name not allowed",
        R.USERUNKNOWN,
        True,
        id="rfc5321-553-default-text",
    ),
    pytest.param(
        554,
        "5.7.1 Message rejected because of unacceptable content.",
        R.SPAMDETECTED,
        False,
        id="unacceptable-content",
    ),
    pytest.param(
        550,
        "5.2.1 Mailbox disabled, not accepting messages",
        R.SUSPEND,
        False,
        id="rfc3463-5.2.1",
    ),
    pytest.param(550, "5.1.10 Recipient address has null MX", R.NOTACCEPT, True, id="null-mx"),
    pytest.param(
        451,
        "4.1.10 Recipient address has null MX",
        R.NOTACCEPT,
        False,
        id="null-mx-4xx-is-not-hard",
    ),
    pytest.param(
        550,
        "5.7.27 Sender address has null MX",
        R.REJECTED,
        False,
        id="sender-null-mx-is-not-notaccept",
    ),
    pytest.param(
        521,
        "mx.example.net does not accept mail",
        R.NOTACCEPT,
        True,
        id="rfc7504-521",
    ),
    pytest.param(
        550,
        "5.2.3 Message length exceeds administrative limit",
        R.EXCEEDLIMIT,
        False,
        id="rfc3463-5.2.3",
    ),
    pytest.param(
        552,
        "5.2.2 Quota exceeded (mailbox for user is full)",
        R.MAILBOXFULL,
        False,
        id="dovecot-quota",
    ),
    pytest.param(
        452,
        "4.2.2 Mailbox full",
        R.MAILBOXFULL,
        False,
        id="mailbox-full-4xx",
    ),
    pytest.param(
        421,
        "4.4.2 mx.example.net Error: timeout exceeded",
        R.NETWORKERROR,
        False,
        id="postfix-smtpd-timeout",
    ),
    pytest.param(451, "4.4.7 Delivery time expired", R.EXPIRED, False, id="4.4.7-expired"),
    pytest.param(
        550,
        "5.7.23 The message was rejected because of Sender Policy Framework violation",
        R.AUTHFAILURE,
        False,
        id="spf-violation",
    ),
    pytest.param(
        554,
        "5.6.0 Mail message is malformed. Not accepted.",
        R.NOTCOMPLIANTRFC,
        False,
        id="malformed",
    ),
    pytest.param(500, "5.5.1 Unrecognized command", R.SYNTAXERROR, False, id="unrecognized"),
    pytest.param(
        501,
        "5.5.4 Syntax error in parameters or arguments",
        R.SYNTAXERROR,
        False,
        id="syntax-error",
    ),
    pytest.param(
        421,
        "4.7.0 Too many connections from your IP, try again in 30 seconds",
        R.TOOMANYCONN,
        False,
        id="too-many-connections",
    ),
    pytest.param(
        450,
        "4.2.0 Greylisted, please try again in 300 seconds",
        R.POLICYVIOLATION,
        False,
        id="greylisted-with-hint",
    ),
    pytest.param(554, "Transaction failed", R.SYSTEMERROR, False, id="rfc5321-554-default"),
    pytest.param(550, "", R.UNDEFINED, False, id="bare-550"),
    pytest.param(550, "go fish", R.ONHOLD, False, id="undecidable-550"),
    pytest.param(250, "2.0.0 OK 1716000000 a1b2c3 - gsmtp", R.DELIVERED, False, id="gmail-ok"),
    pytest.param(250, "Ok: queued as 4VxYz12AbCd", R.DELIVERED, False, id="postfix-queued"),
    # --- no reply at all (the transport's own words) ------------------------------
    pytest.param(None, "Connection refused", R.NETWORKERROR, False, id="refused"),
    pytest.param(
        None,
        "[Errno 111] Connect call failed ('203.0.113.5', 25)",
        R.NETWORKERROR,
        False,
        id="connect-call-failed",
    ),
    pytest.param(
        None,
        "Timed out connecting to mx.example.net on port 25",
        R.NETWORKERROR,
        False,
        id="timeout",
    ),
    pytest.param(
        None,
        "Server disconnected unexpectedly",
        R.NETWORKERROR,
        False,
        id="disconnected",
    ),
    pytest.param(
        None,
        "[Errno -2] Name or service not known",
        R.HOSTUNKNOWN,
        False,
        id="getaddrinfo",
    ),
    pytest.param(
        None,
        "Message expired: queue lifetime of 5 days exceeded",
        R.EXPIRED,
        False,
        id="queue-lifetime",
    ),
    pytest.param(
        None,
        "TLS handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
        R.FAILEDSTARTTLS,
        False,
        id="tls-handshake",
    ),
]


@pytest.mark.parametrize(("code", "text", "reason", "hard"), REPLIES)
def test_reply_is_read_by_meaning(code: int | None, text: str, reason: Reason, hard: bool) -> None:
    result = classify_reply(code, text)
    assert (result.reason, result.hard) == (reason, hard)
    assert result.permanent == (code is not None and 500 <= code < 600)
    assert result.hard == (result.permanent and result.reason in HARD_REASONS)


def _code_and_text() -> list[tuple[int | None, str]]:
    return [(cast("int | None", p.values[0]), cast(str, p.values[1])) for p in REPLIES]


def test_the_table_is_big_enough_to_mean_something() -> None:
    assert len(REPLIES) >= 60
    assert len({p.id for p in REPLIES}) == len(REPLIES)


# --- vocabulary --------------------------------------------------------------------

#: DESIGN.md, `bounces classify --json`: the Sisimai vocabulary, exactly
VOCABULARY = [
    "userunknown",
    "hostunknown",
    "mailboxfull",
    "suspend",
    "hasmoved",
    "notaccept",
    "exceedlimit",
    "mesgtoobig",
    "rejected",
    "blocked",
    "badreputation",
    "requireptr",
    "authfailure",
    "norelaying",
    "speeding",
    "toomanyconn",
    "filtered",
    "spamdetected",
    "virusdetected",
    "policyviolation",
    "securityerror",
    "contenterror",
    "notcompliantrfc",
    "expired",
    "networkerror",
    "systemerror",
    "systemfull",
    "mailererror",
    "syntaxerror",
    "failedstarttls",
    "suppressed",
    "delivered",
    "feedback",
    "vacation",
    "onhold",
    "undefined",
]


def test_reason_values_are_the_design_vocabulary() -> None:
    assert [r.value for r in Reason] == VOCABULARY
    for reason in Reason:
        assert reason.value == reason.name.lower()
        assert str(reason) == reason.value


def test_hard_reasons() -> None:
    assert set(HARD_REASONS) == {R.USERUNKNOWN, R.HOSTUNKNOWN, R.HASMOVED, R.NOTACCEPT}


def test_public_api_is_pinned() -> None:
    assert sorted(classify.__all__) == [
        "HARD_REASONS",
        "Reason",
        "ReplyClass",
        "classify_reply",
        "retry_hint",
        "split_enhanced",
    ]


def test_reply_class_is_frozen() -> None:
    result = classify_reply(550, "5.1.1 User unknown")
    assert result == ReplyClass(R.USERUNKNOWN, "5.1.1", hard=True, permanent=True)
    with pytest.raises(AttributeError):
        result.hard = False  # type: ignore[misc]


# --- enhanced status codes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status", "rest"),
    [
        ("5.1.1 User unknown", "5.1.1", "User unknown"),
        ("550 5.1.1 User unknown", "5.1.1", "User unknown"),
        ("4.7.650 The server was rate limited", "4.7.650", "The server was rate limited"),
        ("5.1.10 RESOLVER.ADR.RecipientNotFound", "5.1.10", "RESOLVER.ADR.RecipientNotFound"),
        (
            GMAIL_NO_SUCH_USER,
            "5.1.1",
            "The email account that you tried to reach does not exist. Please try double-checking"
            " the recipient's email address for typos or unnecessary spaces. For more information,"
            " go to https://support.google.com/mail/?p=NoSuchUser"
            " d2e1a72fcca58-7a1b2c3d4e5si123456b3a.250 - gsmtp",
        ),
        ("mx.example.net ESMTP\n554 5.7.1 Go away", "5.7.1", "mx.example.net ESMTP Go away"),
        ("Relay access denied", None, "Relay access denied"),
        (
            "554 30 Sorry, your message cannot be delivered",
            None,
            "30 Sorry, your message cannot be delivered",
        ),
        ("3.1.1 not a class", None, "3.1.1 not a class"),
        ("5.1.1.2 four parts", None, "5.1.1.2 four parts"),
        ("", None, ""),
    ],
)
def test_split_enhanced(text: str, status: str | None, rest: str) -> None:
    assert split_enhanced(text) == (status, rest)


def test_given_enhanced_status_wins_over_the_text_one() -> None:
    result = classify_reply(550, "Requested action not taken", enhanced="5.1.1")
    assert (result.reason, result.status, result.hard) == (R.USERUNKNOWN, "5.1.1", True)
    assert classify_reply(550, "5.7.1 denied", enhanced=" 5.2.2 ").status == "5.2.2"
    assert classify_reply(550, "5.7.1 denied", enhanced="junk").status == "5.7.1"


@pytest.mark.parametrize(
    ("code", "text", "status"),
    [
        (550, "User unknown", "5.1.1"),
        (452, "Mailbox full", "4.2.2"),
        (554, "Relay access denied", "5.7.1"),
        (250, "Ok: queued", "2.0.0"),
        (None, "Connection refused", "4.4.1"),
        (None, "Connection reset by peer", "4.4.2"),
        (None, "DNS lookup failed: SERVFAIL", "4.4.3"),
        (421, "4.7.0 something", "4.7.0"),  # the reply's own, never rewritten
        (550, "go fish", None),  # onhold: no status to infer
    ],
)
def test_status_is_the_replys_or_inferred(code: int | None, text: str, status: str | None) -> None:
    assert classify_reply(code, text).status == status


def test_status_class_decides_permanence_without_a_reply_code() -> None:
    text = "Host or domain name not found. Name service error for name=example.invalid"
    temporary = classify_reply(None, text)
    final = classify_reply(None, text, enhanced="5.1.2")
    assert (temporary.reason, temporary.permanent, temporary.hard) == (R.HOSTUNKNOWN, False, False)
    assert (final.reason, final.permanent, final.hard) == (R.HOSTUNKNOWN, True, True)
    assert classify_reply(None, "", enhanced="2.0.0").reason is R.DELIVERED


def test_decisive_status_beats_text() -> None:
    # X.2.2 says mailbox full whatever else the text mentions
    assert classify_reply(552, "5.2.2 User unknown here, quota").reason is R.MAILBOXFULL
    # Gmail 4.7.26 says "rate limited", but the status names the cause
    text = "4.7.26 This mail has been rate limited because it is unauthenticated."
    assert classify_reply(421, text).reason is R.AUTHFAILURE


def test_specific_status_beats_vague_text() -> None:
    assert classify_reply(421, "4.4.2 Please try again later").reason is R.NETWORKERROR
    assert classify_reply(550, "5.7.1 Please try again later").reason is R.SYSTEMERROR


# --- retry hints -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4.7.0 Too many connections, try again in 30 seconds", 30.0),
        ("451 4.7.1 Greylisted, retry in 5 minutes", 300.0),
        ("Please try again after 1 hour", 3600.0),
        ("Deferred: try again in 2m", 120.0),
        ("rate limited, try again in 90s", 90.0),
        ("try again in 1h30m", 5400.0),
        ("try again in 1 hour and 15 minutes", 4500.0),
        ("Please try again in an hour", 3600.0),
        ("temporarily deferred for 2 hours", 7200.0),
        ("please wait at least 10 mins before retrying", 600.0),
        ("Greylisting in action, please come back in 00:05:00", 300.0),
        ("try again in 1.5 minutes", 90.0),
        ("4.7.0 Try again later, closing connection.", None),
        ("try again in a few minutes", None),
        ("too many sessions in 550", None),
        ("", None),
    ],
)
def test_retry_hint(text: str, seconds: float | None) -> None:
    assert retry_hint(text) == seconds


# --- the rule index is only a speed-up ----------------------------------------------


@pytest.mark.parametrize("table", [classify._TEXT_RULES, classify._WEAK_TEXT_RULES])
def test_rule_index_answers_as_searching_rule_by_rule(table: RuleTable[Reason]) -> None:
    texts = [classify._normalise(split_enhanced(text)[1]) for _, text in _code_and_text()]
    texts += ["antispam", "virus", "no such user", "xno such user", "not listed in spamhaus"]
    for text in texts:
        expected = next((r for r, rx in table.rules if rx.search(text)), None)
        assert table.first(text) == expected, text


#: words the rules are written with, plus reply debris: texts built from them reach deep
#: into the rules, where index and plain search could disagree
_RULE_WORDS = sorted(
    {
        w
        for _, source in classify._STRONG_RULES + classify._WEAK_RULES
        for w in re.findall(r"[a-z0-9'/.-]{2,}", re.sub(r"\\[bSd]", " ", source))
    }
    | {"203.0.113.5", "[bl21]", "x@example.org", "5.7.1", ";", ",", "e-mail", "antispam"}
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(_RULE_WORDS), min_size=1, max_size=25))
def test_rule_index_agrees_with_plain_search_on_any_text(words: list[str]) -> None:
    text = classify._normalise(" ".join(words))
    for table in (classify._TEXT_RULES, classify._WEAK_TEXT_RULES):
        expected = next((r for r, rx in table.rules if rx.search(text)), None)
        assert table.first(text) == expected


def test_rules_are_indexable() -> None:
    with pytest.raises(ValueError, match="literal word"):
        RuleTable(((R.BLOCKED, r".*blocked"),))
    with pytest.raises(ValueError, match="optional group"):
        RuleTable(((R.BLOCKED, r"(ip )?blocked"),))
