//! One face for rumqttc's MQTT 3.1.1 and MQTT 5 clients, so the source's
//! loop is written once.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;

/// What the source needs from one `poll` of the event loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// A connection is up; `session_present` says the broker resumed the
    /// persistent session (and will redeliver what was not acknowledged).
    Connected {
        session_present: bool,
    },
    /// The broker answered a subscribe: `granted` per filter, `None` where
    /// it refused.
    Subscribed {
        granted: Vec<Option<u8>>,
    },
    Message(Message),
    /// We asked to disconnect and the DISCONNECT went out.
    Disconnected,
    Other,
}

/// A received PUBLISH, kept whole so it can be acknowledged later.
#[derive(Debug, Clone)]
pub(crate) enum Message {
    V4(rumqttc::Publish),
    V5(v5::mqttbytes::v5::Publish),
}

impl Message {
    pub(crate) fn payload(&self) -> Bytes {
        match self {
            Self::V4(p) => p.payload.clone(),
            Self::V5(p) => p.payload.clone(),
        }
    }
    pub(crate) fn topic(&self) -> String {
        match self {
            Self::V4(p) => p.topic.clone(),
            Self::V5(p) => String::from_utf8_lossy(&p.topic).into_owned(),
        }
    }
    /// QoS 0 messages have nothing to acknowledge.
    pub(crate) fn needs_ack(&self) -> bool {
        match self {
            Self::V4(p) => p.qos != rumqttc::QoS::AtMostOnce,
            Self::V5(p) => p.qos != v5::mqttbytes::QoS::AtMostOnce,
        }
    }
    pub(crate) fn dup(&self) -> bool {
        match self {
            Self::V4(p) => p.dup,
            Self::V5(p) => p.dup,
        }
    }
}

/// Why the connection failed, and whether trying again can help.
#[derive(Debug)]
pub(crate) struct ConnError {
    pub(crate) message: String,
    /// Refused for a reason that reconnecting will not fix: bad
    /// credentials, not authorized, a banned client id.
    pub(crate) permanent: bool,
}

pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

pub(crate) enum Loop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// Everything protocol-specific that `session` needs to build a client.
pub(crate) struct Options {
    pub(crate) v5: bool,
    pub(crate) client_id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) keep_alive: Duration,
    pub(crate) session_expiry_secs: u32,
    pub(crate) receive_maximum: u16,
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) tls: Option<rumqttc::TlsConfiguration>,
    /// Capacity of the client-to-event-loop request channel.
    pub(crate) requests: usize,
}

/// The largest MQTT packet we accept: 1 MiB, far above any reading.
const MAX_PACKET: usize = 1 << 20;

pub(crate) fn session(o: Options) -> (Client, Loop) {
    if o.v5 {
        let mut opts = v5::MqttOptions::new(o.client_id, o.host, o.port);
        opts.set_keep_alive(o.keep_alive)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(o.session_expiry_secs))
            .set_receive_maximum(Some(o.receive_maximum))
            .set_max_packet_size(Some(MAX_PACKET as u32))
            .set_manual_acks(true);
        if let Some((user, pass)) = o.credentials {
            opts.set_credentials(user, pass);
        }
        if let Some(tls) = o.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(tls));
        }
        let (client, eventloop) = v5::AsyncClient::new(opts, o.requests);
        (Client::V5(client), Loop::V5(Box::new(eventloop)))
    } else {
        let mut opts = rumqttc::MqttOptions::new(o.client_id, o.host, o.port);
        opts.set_keep_alive(o.keep_alive)
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_manual_acks(true);
        if let Some((user, pass)) = o.credentials {
            opts.set_credentials(user, pass);
        }
        if let Some(tls) = o.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(tls));
        }
        let (client, eventloop) = rumqttc::AsyncClient::new(opts, o.requests);
        (Client::V4(client), Loop::V4(Box::new(eventloop)))
    }
}

impl Client {
    /// Queues a subscribe without waiting, so it can be called from the
    /// task that polls the event loop.
    pub(crate) fn try_subscribe(&self, topics: &[String], qos: u8) -> Result<(), String> {
        match self {
            Self::V4(c) => {
                let qos = if qos >= 2 {
                    rumqttc::QoS::ExactlyOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                c.try_subscribe_many(
                    topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), qos)),
                )
                .map_err(|e| e.to_string())
            }
            Self::V5(c) => {
                let qos = if qos >= 2 {
                    v5::mqttbytes::QoS::ExactlyOnce
                } else {
                    v5::mqttbytes::QoS::AtLeastOnce
                };
                c.try_subscribe_many(
                    topics
                        .iter()
                        .map(|t| v5::mqttbytes::v5::Filter::new(t.clone(), qos)),
                )
                .map_err(|e| e.to_string())
            }
        }
    }

    /// Acknowledges one message (PUBACK for QoS 1, PUBREC for QoS 2).
    pub(crate) async fn ack(&self, message: &Message) -> Result<(), String> {
        match (self, message) {
            (Self::V4(c), Message::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Self::V5(c), Message::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("message and client speak different MQTT versions".to_owned()),
        }
    }

    pub(crate) fn try_disconnect(&self) -> Result<(), String> {
        match self {
            Self::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Self::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        }
    }
}

impl Loop {
    pub(crate) async fn poll(&mut self) -> Result<Event, ConnError> {
        match self {
            Self::V4(l) => {
                use rumqttc::{Event as E, Outgoing, Packet};
                match l.poll().await {
                    Ok(E::Incoming(Packet::ConnAck(ack))) => Ok(Event::Connected {
                        session_present: ack.session_present,
                    }),
                    Ok(E::Incoming(Packet::SubAck(ack))) => Ok(Event::Subscribed {
                        granted: ack
                            .return_codes
                            .iter()
                            .map(|c| match c {
                                rumqttc::SubscribeReasonCode::Success(q) => Some(*q as u8),
                                rumqttc::SubscribeReasonCode::Failure => None,
                            })
                            .collect(),
                    }),
                    Ok(E::Incoming(Packet::Publish(p))) => Ok(Event::Message(Message::V4(p))),
                    Ok(E::Outgoing(Outgoing::Disconnect)) => Ok(Event::Disconnected),
                    Ok(_) => Ok(Event::Other),
                    Err(e) => {
                        use rumqttc::ConnectReturnCode as C;
                        let permanent = matches!(
                            e,
                            rumqttc::ConnectionError::ConnectionRefused(
                                C::BadUserNamePassword
                                    | C::NotAuthorized
                                    | C::BadClientId
                                    | C::RefusedProtocolVersion
                            )
                        );
                        Err(ConnError {
                            message: e.to_string(),
                            permanent,
                        })
                    }
                }
            }
            Self::V5(l) => {
                use v5::mqttbytes::v5::Packet;
                use v5::{Event as E, mqttbytes::v5::SubscribeReasonCode as S};
                match l.poll().await {
                    Ok(E::Incoming(Packet::ConnAck(ack))) => Ok(Event::Connected {
                        session_present: ack.session_present,
                    }),
                    Ok(E::Incoming(Packet::SubAck(ack))) => Ok(Event::Subscribed {
                        granted: ack
                            .return_codes
                            .iter()
                            .map(|c| match c {
                                S::Success(q) => Some(*q as u8),
                                _ => None,
                            })
                            .collect(),
                    }),
                    Ok(E::Incoming(Packet::Publish(p))) => Ok(Event::Message(Message::V5(p))),
                    Ok(E::Outgoing(rumqttc::Outgoing::Disconnect)) => Ok(Event::Disconnected),
                    Ok(_) => Ok(Event::Other),
                    Err(e) => {
                        use v5::mqttbytes::v5::ConnectReturnCode as C;
                        let permanent = matches!(
                            e,
                            v5::ConnectionError::ConnectionRefused(
                                C::BadUserNamePassword
                                    | C::NotAuthorized
                                    | C::ClientIdentifierNotValid
                                    | C::UnsupportedProtocolVersion
                                    | C::Banned
                                    | C::BadAuthenticationMethod
                            )
                        );
                        Err(ConnError {
                            message: e.to_string(),
                            permanent,
                        })
                    }
                }
            }
        }
    }
}
