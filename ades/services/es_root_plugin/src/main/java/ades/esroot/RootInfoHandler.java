package ades.esroot;

import static org.elasticsearch.rest.RestRequest.Method.GET;
import static org.elasticsearch.rest.RestRequest.Method.HEAD;

import java.io.IOException;
import java.util.List;
import java.util.function.Supplier;

import org.elasticsearch.Build;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.index.IndexVersion;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.xcontent.XContentBuilder;

/**
 * {@code GET /} and {@code HEAD /}: the node's name, its cluster's name and UUID, and the build it runs, in the
 * shape clients expect from any Elasticsearch. Everything comes from this node's own state: no request goes to
 * another node, so the answer is quick and works while the cluster is still forming (the UUID is then "_na_").
 */
final class RootInfoHandler extends BaseRestHandler {

    static final String TAGLINE = "You Know, for Search";

    private final Supplier<ClusterService> clusterService;

    RootInfoHandler(Supplier<ClusterService> clusterService) {
        this.clusterService = clusterService;
    }

    @Override
    public String getName() {
        return "ades_root_info";
    }

    @Override
    public List<Route> routes() {
        // HEAD is what elasticsearch-py's ping() sends; the node answers it with the GET's status and no body.
        return List.of(new Route(GET, "/"), new Route(HEAD, "/"));
    }

    @Override
    public boolean canTripCircuitBreaker() {
        // A liveness probe must answer even when the node is short of memory.
        return false;
    }

    @Override
    protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
        // The root answers pretty-printed unless ?pretty says otherwise, as the default distribution's does.
        boolean prettyByDefault = request.hasParam("pretty") == false;
        return channel -> {
            XContentBuilder builder = channel.newBuilder();
            if (prettyByDefault) {
                builder.prettyPrint().lfAtEnd();
            }
            write(builder, clusterService.get());
            channel.sendResponse(new RestResponse(RestStatus.OK, builder));
        };
    }

    private static void write(XContentBuilder builder, ClusterService cluster) throws IOException {
        Build build = Build.current();
        builder.startObject();
        builder.field("name", cluster.getNodeName());
        builder.field("cluster_name", cluster.getClusterName().value());
        builder.field("cluster_uuid", cluster.state().metadata().clusterUUID());
        builder.startObject("version");
        builder.field("number", build.qualifiedVersion());
        builder.field("build_flavor", build.flavor());
        builder.field("build_type", build.type().displayName());
        builder.field("build_hash", build.hash());
        builder.field("build_date", build.date());
        builder.field("build_snapshot", build.isSnapshot());
        builder.field("lucene_version", IndexVersion.current().luceneVersion().toString());
        builder.field("minimum_wire_compatibility_version", build.minWireCompatVersion());
        builder.field("minimum_index_compatibility_version", build.minIndexCompatVersion());
        builder.endObject();
        builder.field("tagline", TAGLINE);
        builder.endObject();
    }
}
