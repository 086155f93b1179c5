//! Request-response framing: a 4-byte big-endian length, then a versioned
//! postcard message (`nebula_protocol::wire`). The length is checked against
//! the maximum for the kind of message (a response's, for what it answers:
//! a module's slice may not be bigger than a slice), and memory grows only
//! as bytes actually arrive: a peer announcing a huge frame and sending
//! nothing costs nothing.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use nebula_protocol::wire::{self, MAX_FRAME_BYTES, MAX_REQUEST_BYTES, Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nebula/rpc/1");

/// libp2p clones the codec for each outbound stream, which writes one
/// request and reads its response: the request sets the response's limit.
#[derive(Debug, Clone)]
pub struct WireCodec {
    response_limit: usize,
}

impl Default for WireCodec {
    fn default() -> Self {
        Self { response_limit: MAX_FRAME_BYTES }
    }
}

/// Buffer grown ahead of the bytes received, at most.
const READ_CHUNK: usize = 64 * 1024;

async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin + Send>(io: &mut R, max_len: usize) -> io::Result<T> {
    let invalid = |error| io::Error::new(io::ErrorKind::InvalidData, error);
    let mut header = [0u8; wire::FRAME_HEADER_BYTES];
    io.read_exact(&mut header).await?;
    let length = wire::frame_length(header, max_len).map_err(invalid)?;
    let mut body = Vec::with_capacity(length.min(READ_CHUNK));
    io.take(length as u64).read_to_end(&mut body).await?;
    if body.len() < length {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the frame ended early"));
    }
    wire::decode(&body, max_len).map_err(invalid)
}

async fn write_frame<T: Serialize, W: AsyncWrite + Unpin + Send>(io: &mut W, message: &T) -> io::Result<()> {
    let frame = wire::encode_frame(message).map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    io.write_all(&frame).await?;
    io.flush().await
}

impl Codec for WireCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.response_limit).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.response_limit = wire::max_response_bytes(&request);
        write_frame(io, &request).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, response: Response) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use nebula_protocol::ModuleId;
    use nebula_protocol::wire::{ModuleSlice, SliceIndex};

    #[test]
    fn frames_round_trip_and_oversized_lengths_are_refused_before_allocating() {
        futures::executor::block_on(async {
            let request = Request::FetchSlice { module: ModuleId::of_bytes(b"m"), slice: SliceIndex::At(3) };
            let mut buffer = Cursor::new(Vec::new());
            let mut codec = WireCodec::default();
            codec.write_request(&PROTOCOL, &mut buffer, request.clone()).await.unwrap();
            let mut reader = Cursor::new(buffer.into_inner());
            assert_eq!(WireCodec::default().read_request(&PROTOCOL, &mut reader).await.unwrap(), request);
            // The answer to a slice request may be a slice, and no bigger.
            let over = ((nebula_protocol::wire::MAX_SLICE_FRAME_BYTES + 1) as u32).to_be_bytes();
            let error = codec.read_response(&PROTOCOL, &mut Cursor::new(over.to_vec())).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            let slice = ModuleSlice { size: 5 << 20, index: 3, encoded: vec![1; 1 << 20] };
            let mut buffer = Cursor::new(Vec::new());
            WireCodec::default()
                .write_response(&PROTOCOL, &mut buffer, Response::Slice(Some(slice.clone())))
                .await
                .unwrap();
            let answer = codec.read_response(&PROTOCOL, &mut Cursor::new(buffer.into_inner())).await.unwrap();
            assert_eq!(answer, Response::Slice(Some(slice)));

            let mut huge = Cursor::new(u32::MAX.to_be_bytes().to_vec());
            let error = WireCodec::default().read_request(&PROTOCOL, &mut huge).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);

            let mut garbage = Cursor::new([0, 0, 0, 3, 1, 250, 250].to_vec());
            assert!(WireCodec::default().read_request(&PROTOCOL, &mut garbage).await.is_err());

            // A request may not be as big as a response (which can carry a call's output).
            let mut big_request = Cursor::new(((MAX_REQUEST_BYTES + 1) as u32).to_be_bytes().to_vec());
            let error = WireCodec::default().read_request(&PROTOCOL, &mut big_request).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            // A frame that promises more than it sends fails without holding its claimed size.
            let mut short = Cursor::new([&(MAX_FRAME_BYTES as u32).to_be_bytes()[..], &[1, 2, 3]].concat());
            let error = WireCodec::default().read_response(&PROTOCOL, &mut short).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        });
    }
}
