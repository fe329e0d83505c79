package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest document.
type object struct {
	gvk  string // "apps/v1 Deployment"
	name string
	obj  any // *appsv1.Deployment, *corev1.Service, *serviceMonitor, …
}

// typed maps apiVersion + kind to a constructor of the type the document
// must decode into. A kind missing here fails the tests: add it, with its
// k8s.io/api type (or a local struct for a CRD), when a manifest needs it.
var typed = map[string]func() any{
	"apps/v1 Deployment":                            func() any { return &appsv1.Deployment{} },
	"v1 Service":                                    func() any { return &corev1.Service{} },
	"v1 ConfigMap":                                  func() any { return &corev1.ConfigMap{} },
	"v1 Secret":                                     func() any { return &corev1.Secret{} },
	"v1 ServiceAccount":                             func() any { return &corev1.ServiceAccount{} },
	"policy/v1 PodDisruptionBudget":                 func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1 NetworkPolicy":            func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1 ServiceMonitor":       func() any { return &serviceMonitor{} },
	"monitoring.coreos.com/v1 PodMonitor":           func() any { return &podMonitor{} },
	"kustomize.config.k8s.io/v1beta1 Kustomization": nil, // decoded by kustomizationFile
}

// docSeparator splits a YAML stream into documents.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs returns the non-empty documents of a YAML stream (a document
// of only comments is empty).
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(b), -1) {
		if hasContent([]byte(d)) {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func hasContent(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return true
		}
	}
	return false
}

// strictUnmarshal decodes YAML into v the way the API server's strict field
// validation does: duplicate keys, unknown fields and wrongly-cased field
// names are errors.
func strictUnmarshal(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("converting YAML: %w", err)
	}
	strict, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeDoc strictly decodes one document into its typed object.
func decodeDoc(doc []byte) (object, error) {
	var tm struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, fmt.Errorf("reading apiVersion/kind: %w", err)
	}
	gvk := tm.APIVersion + " " + tm.Kind
	newObj, ok := typed[gvk]
	if !ok || newObj == nil {
		return object{}, fmt.Errorf("%s %q: no typed decoder for this kind", gvk, tm.Metadata.Name)
	}
	obj := newObj()
	if err := strictUnmarshal(doc, obj); err != nil {
		return object{}, fmt.Errorf("%s %q: %w", gvk, tm.Metadata.Name, err)
	}
	return object{gvk: gvk, name: tm.Metadata.Name, obj: obj}, nil
}

// decodeStream strictly decodes every document of a YAML stream.
func decodeStream(b []byte) ([]object, error) {
	var objs []object
	var errs []error
	for _, doc := range splitDocs(b) {
		o, err := decodeDoc(doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) the manifests may use. Field names are the
// CRD's; anything else fails strict decoding, so a typo cannot silently
// disable scraping.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		TargetLabels      []string             `json:"targetLabels,omitempty"`
		PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *namespaceSelector   `json:"namespaceSelector,omitempty"`
		Endpoints         []monitorEndpoint    `json:"endpoints"`
	} `json:"spec"`
}

// podMonitor is the used part of monitoring.coreos.com/v1 PodMonitor.
type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel            string               `json:"jobLabel,omitempty"`
		PodTargetLabels     []string             `json:"podTargetLabels,omitempty"`
		Selector            metav1.LabelSelector `json:"selector"`
		NamespaceSelector   *namespaceSelector   `json:"namespaceSelector,omitempty"`
		PodMetricsEndpoints []monitorEndpoint    `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type namespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

// monitorEndpoint is the used part of the operator's Endpoint and
// PodMetricsEndpoint (the same fields, by the same names).
type monitorEndpoint struct {
	Port          string    `json:"port"`
	Path          string    `json:"path,omitempty"`
	Scheme        string    `json:"scheme,omitempty"`
	Interval      string    `json:"interval,omitempty"`
	ScrapeTimeout string    `json:"scrapeTimeout,omitempty"`
	HonorLabels   bool      `json:"honorLabels,omitempty"`
	Relabelings   []relabel `json:"relabelings,omitempty"`
}

type relabel struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    string   `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Replacement  string   `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}
