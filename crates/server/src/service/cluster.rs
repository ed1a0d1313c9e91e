//! etcd's Cluster service. Membership is the static initial cluster for now;
//! changing it arrives with multi-member clusters.

use api::pb::etcdserverpb::{
    cluster_server::Cluster, Member, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::Ctx;

pub struct ClusterService {
    ctx: Ctx,
}

impl ClusterService {
    pub fn new(ctx: Ctx) -> Self {
        ClusterService { ctx }
    }

    fn members(&self) -> Vec<Member> {
        self.ctx
            .cfg
            .members
            .iter()
            .map(|m| Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: false,
            })
            .collect()
    }
}

fn unsupported() -> Status {
    Status::unimplemented("etcdserver: membership changes are not supported yet")
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(unsupported())
    }
    async fn member_remove(
        &self,
        _r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(unsupported())
    }
    async fn member_update(
        &self,
        _r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(unsupported())
    }
    async fn member_list(
        &self,
        _r: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: self.ctx.header(None),
            members: self.members(),
        }))
    }
    async fn member_promote(
        &self,
        _r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(unsupported())
    }
}
